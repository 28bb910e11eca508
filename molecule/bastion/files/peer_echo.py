"""A host "beyond the bastion": answers every TCP connection on port 8080 with the peer address it sees."""

import socketserver


class PeerEcho(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(f"{self.client_address[0]}\n".encode())


socketserver.TCPServer.allow_reuse_address = True
with socketserver.ThreadingTCPServer(("0.0.0.0", 8080), PeerEcho) as server:
    server.serve_forever()
