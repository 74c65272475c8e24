"""Generation flow: Bedrock text-to-image with seeded prompt modifiers, for campaigns and
for GET /images?prompt=."""
