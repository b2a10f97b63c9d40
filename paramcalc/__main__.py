from paramcalc.cli.fast import main

main()
