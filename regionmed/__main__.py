from regionmed.cli import app

app(prog_name="regionmed")
