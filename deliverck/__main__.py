from deliverck.cli import main

main()
