"""Duplicate images: exact copies take the first copy's vector (`exact`), and images close to
an earlier one of their prompt join its group when their run commits (`near`)."""
