from wahub.cli import main

main()
