"""Running the app as several worker processes behind a reverse proxy (`python app.py --workers N`)."""
