from featinv.cli import main

main()
