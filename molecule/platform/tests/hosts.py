"""The scenario's hosts and the addresses where the test runner (on the Docker network's gateway) reaches them."""

ADDRESSES = {"platform-bookworm": "172.31.1.11", "platform-trixie": "172.31.1.12"}
