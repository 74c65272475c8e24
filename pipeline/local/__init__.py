"""The local stack: moto server, the resources of infra/template.yaml, the event pump and the
API on loopback. Nothing here runs on AWS."""
