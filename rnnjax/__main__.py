from rnnjax.apps.cli import main

main()
