"""The one writer of a commit's steps (`writer`): every flow that makes vectors visible or
takes them back (an embedding run, a model upgrade's batch, the repair of superseded rows, an
exact copy, a deletion) calls it, so the write order and its rules have one home."""
