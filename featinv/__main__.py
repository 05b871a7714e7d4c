from featinv.cli.main import main

main()
