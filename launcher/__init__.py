"""`python app.py --workers N`: N Gradio worker processes behind nginx, supervised (see cli.py)."""
