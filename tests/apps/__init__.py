"""Small applications that tests run in real server processes."""
