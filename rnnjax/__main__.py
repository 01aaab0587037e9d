from rnnjax.cli import main

main()
