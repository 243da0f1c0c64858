"""The only code in deliverck that touches the network."""
