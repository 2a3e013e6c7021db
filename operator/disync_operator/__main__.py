from disync_operator.cli import main

main()
