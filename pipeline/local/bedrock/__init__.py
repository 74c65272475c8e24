"""Bedrock runtime emulator: InvokeModel for the text-to-image families, answered by a
deterministic procedural painter. A stand-in for Bedrock, not a model: it paints shapes."""
