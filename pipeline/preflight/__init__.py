"""`imgsim preflight`: read-only questions to AWS that tell an operator, before deploying, whether
the account can run the stack. `checks` decides from the answers (pure, no AWS); `probes` asks."""
