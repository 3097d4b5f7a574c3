"""The Evaluate tab\x27s sections: chat prompts and models, images (zero-shot, linear probe), search."""
