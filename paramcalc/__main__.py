from paramcalc.cli.app import main

main()
