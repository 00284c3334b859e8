"""reportcycles: settings, composition root, migrations and the command line."""
