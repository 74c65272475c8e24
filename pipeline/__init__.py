"""imgsim pipeline library: pure logic at the core, AWS adapters at the edges."""
