from deliverck.lab.cli import main

main()
