"""What every tab uses on the page: the provider picker, the Reproduce box, the image upload,
examples, how results and errors are shown, update pacing, the page's guard, standalone runs."""
