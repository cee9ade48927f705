import java.io.BufferedInputStream;
import java.io.ByteArrayOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.net.SocketTimeoutException;
import java.nio.charset.StandardCharsets;
import java.util.Locale;

/**
 * The classic Java server: a ServerSocket, and a new platform thread for every connection, which
 * reads its requests with blocking I/O for as long as the client keeps it open.
 *
 * <p>Usage: java ThreadPeer PORT BACKLOG REQUEST_TIMEOUT_MS. An idle connection waits without a
 * limit; once a request has begun, it must arrive within REQUEST_TIMEOUT_MS. Thread stacks are the
 * JVM's default (-Xss), as set on the command line.
 */
public final class ThreadPeer {
    static final int MAX_HEADER_BYTES = 64 * 1024;

    private ThreadPeer() {}

    public static void main(String[] args) throws IOException {
        int port = Integer.parseInt(args[0]);
        int backlog = Integer.parseInt(args[1]);
        int requestTimeoutMs = Integer.parseInt(args[2]);
        ServerSocket server = new ServerSocket();
        server.setReuseAddress(true);
        server.bind(new java.net.InetSocketAddress(InetAddress.getByName("127.0.0.1"), port), backlog);
        while (true) {
            Socket socket = server.accept();
            // Named, so that the lab can tell connection threads from the JVM's own.
            new Thread(() -> serve(socket, requestTimeoutMs), "conn").start();
        }
    }

    private static void serve(Socket socket, int requestTimeoutMs) {
        try (socket) {
            socket.setTcpNoDelay(true);
            InputStream in = new BufferedInputStream(socket.getInputStream());
            OutputStream out = socket.getOutputStream();
            while (true) {
                socket.setSoTimeout(0); // idle between requests: no limit
                int first = in.read();
                if (first < 0) {
                    return;
                }
                socket.setSoTimeout(requestTimeoutMs);
                if (!handle(first, in, out)) {
                    return;
                }
            }
        } catch (SocketTimeoutException e) {
            // A request that stopped half-way: hang up on it.
        } catch (IOException e) {
            // Reset by the client, or the backend failed: the connection ends.
        } finally {
            Work.closeBackend();
        }
    }

    /** Reads one request whose first byte is {@code first} and answers it; false: close. */
    private static boolean handle(int first, InputStream in, OutputStream out) throws IOException {
        ByteArrayOutputStream head = new ByteArrayOutputStream(512);
        head.write(first);
        int last4 = first; // the last four bytes read, to spot the blank line that ends the head
        while ((last4 & 0xFFFF) != 0x0A0A && last4 != 0x0D0A0D0A) {
            if (head.size() > MAX_HEADER_BYTES) {
                return error(out, 431, "header block too long");
            }
            int c = in.read();
            if (c < 0) {
                return false;
            }
            head.write(c);
            last4 = (last4 << 8) | c;
        }
        String[] lines = head.toString(StandardCharsets.ISO_8859_1).split("\r?\n");
        String[] start = lines[0].split(" ");
        if (start.length != 3 || !start[2].startsWith("HTTP/1.")) {
            return error(out, 400, "malformed request line");
        }
        boolean keepAlive = start[2].equals("HTTP/1.1");
        long bodyLength = 0;
        for (int k = 1; k < lines.length && !lines[k].isEmpty(); k++) {
            int colon = lines[k].indexOf(':');
            if (colon <= 0) {
                return error(out, 400, "malformed header");
            }
            String name = lines[k].substring(0, colon).trim().toLowerCase(Locale.ROOT);
            String value = lines[k].substring(colon + 1).trim().toLowerCase(Locale.ROOT);
            if (name.equals("connection")) {
                keepAlive = keepAlive ? !value.equals("close") : value.equals("keep-alive");
            } else if (name.equals("content-length")) {
                try {
                    bodyLength = Long.parseLong(value);
                } catch (NumberFormatException e) {
                    return error(out, 400, "malformed content-length");
                }
            } else if (name.equals("transfer-encoding")) {
                return error(out, 400, "chunked bodies are not served");
            }
        }
        if (bodyLength < 0) {
            return error(out, 400, "malformed content-length");
        }
        in.skipNBytes(bodyLength); // a body is allowed, and ignored
        if (!start[0].equals("GET")) {
            return error(out, 405, "only GET is served");
        }
        int q = start[1].indexOf('?');
        if (!(q < 0 ? start[1] : start[1].substring(0, q)).equals("/work")) {
            return error(out, 404, "only /work is served");
        }
        Work.Request request;
        try {
            request = Work.parse(q < 0 ? null : start[1].substring(q + 1));
        } catch (Work.BadRequest e) {
            return error(out, 400, e.getMessage());
        }
        long serviceUs = Work.run(request);
        String response = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\nx-service-us: " + serviceUs
                + (keepAlive ? "" : "\r\nconnection: close") + "\r\n\r\nok\n";
        out.write(response.getBytes(StandardCharsets.US_ASCII));
        return keepAlive;
    }

    private static boolean error(OutputStream out, int status, String reason) throws IOException {
        String body = reason + "\n";
        String response = "HTTP/1.1 " + status + " Error\r\ncontent-length: " + body.length()
                + "\r\nconnection: close\r\n\r\n" + body;
        out.write(response.getBytes(StandardCharsets.US_ASCII));
        return false;
    }
}
