import java.io.BufferedInputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.lang.management.ManagementFactory;
import java.lang.management.ThreadMXBean;
import java.net.InetSocketAddress;
import java.net.Socket;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Map;
import java.util.regex.Pattern;

/**
 * simlab's /work, shared by the servlet (Tomcat) and the thread-per-connection server.
 *
 * <p>Burns cpu_ms of this thread's own CPU time (ThreadMXBean), then makes the backend calls on
 * this thread's connection to simlab's backend (one line per call, answered after its delay), one
 * after another or all written at once (fanout=parallel). The rules for bad values are those of
 * simlab/real/protocol.py.
 */
final class Work {
    static final double MAX_CPU_MS = 60_000;
    static final double MAX_IO_MS = 600_000;
    static final double MAX_CALLS = 1_000;
    // Decimal numbers only: Double.parseDouble would also take "0x1p3", "1d" and "NaN".
    private static final Pattern NUMBER = Pattern.compile("[+-]?(\\d+\\.?\\d*|\\.\\d+)([eE][+-]?\\d+)?");
    private static final ThreadMXBean CPU = ManagementFactory.getThreadMXBean();
    private static final ThreadLocal<Backend> BACKEND = new ThreadLocal<>();
    static volatile long sink;

    /** A request the server answers with 400. */
    static final class BadRequest extends Exception {
        BadRequest(String reason) {
            super(reason);
        }
    }

    /** A validated request. */
    record Request(double cpuMs, long[] delaysUs, boolean parallel) {}

    private Work() {}

    private static double number(String text, String name, double high) throws BadRequest {
        if (!NUMBER.matcher(text).matches()) {
            throw new BadRequest(name + " must be a number");
        }
        double value = Double.parseDouble(text);
        if (value < 0 || value > high) {
            throw new BadRequest(name + " must be between 0 and " + (long) high);
        }
        return value;
    }

    /** Validates a query string (null: none), as protocol.parse_work does. */
    static Request parse(String query) throws BadRequest {
        Map<String, String> params = new HashMap<>();
        for (String field : query == null ? new String[0] : query.split("&")) {
            if (field.isEmpty()) {
                continue;
            }
            int eq = field.indexOf('=');
            try {
                String key = URLDecoder.decode(eq < 0 ? field : field.substring(0, eq), StandardCharsets.UTF_8);
                String value = eq < 0 ? "" : URLDecoder.decode(field.substring(eq + 1), StandardCharsets.UTF_8);
                params.put(key, value); // the last value wins
            } catch (IllegalArgumentException e) {
                throw new BadRequest("malformed query");
            }
        }
        for (String key : params.keySet()) {
            if (!key.equals("cpu_ms") && !key.equals("io_ms") && !key.equals("calls") && !key.equals("fanout")) {
                throw new BadRequest("unknown parameter " + key);
            }
        }
        double calls = params.containsKey("calls") ? number(params.get("calls"), "calls", MAX_CALLS) : 0;
        if (calls != Math.floor(calls)) {
            throw new BadRequest("calls must be an integer");
        }
        String fanout = params.getOrDefault("fanout", "sequential");
        if (!fanout.equals("sequential") && !fanout.equals("parallel")) {
            throw new BadRequest("fanout must be sequential or parallel");
        }
        String[] raw = params.getOrDefault("io_ms", "0").split(",", -1);
        double[] io = new double[raw.length];
        for (int k = 0; k < raw.length; k++) {
            io[k] = number(raw[k], "io_ms", MAX_IO_MS);
        }
        int n = (int) calls;
        if (io.length != 1 && io.length != n) {
            throw new BadRequest("io_ms must be one value or one per call");
        }
        long[] delays = new long[n];
        for (int k = 0; k < n; k++) {
            delays[k] = (long) ((io.length == 1 ? io[0] : io[k]) * 1000);
        }
        double cpu = params.containsKey("cpu_ms") ? number(params.get("cpu_ms"), "cpu_ms", MAX_CPU_MS) : 0;
        return new Request(cpu, delays, fanout.equals("parallel"));
    }

    /** Spins until this thread has used ms milliseconds of CPU time. */
    static void burnCpu(double ms) {
        if (ms <= 0) {
            return;
        }
        long end = CPU.getCurrentThreadCpuTime() + (long) (ms * 1e6);
        long x = 0;
        while (CPU.getCurrentThreadCpuTime() < end) {
            for (int i = 0; i < 100; i++) {
                x += i;
            }
        }
        sink = x;
    }

    /** Does the work on this thread; returns its duration in microseconds. */
    static long run(Request r) throws IOException {
        long t0 = System.nanoTime();
        burnCpu(r.cpuMs());
        call(r.delaysUs(), r.parallel());
        return (System.nanoTime() - t0) / 1000;
    }

    /** One connection to the backend per thread, opened on its first call (a thread's own link). */
    private static final class Backend {
        final Socket socket;
        final InputStream in;
        final OutputStream out;
        long nextId;

        Backend(int port) throws IOException {
            socket = new Socket();
            socket.setTcpNoDelay(true);
            socket.connect(new InetSocketAddress("127.0.0.1", port), 10_000);
            socket.setSoTimeout(630_000);
            in = new BufferedInputStream(socket.getInputStream());
            out = socket.getOutputStream();
        }

        void readLine() throws IOException {
            int c;
            while ((c = in.read()) != '\n') {
                if (c < 0) {
                    throw new IOException("the backend closed the connection");
                }
            }
        }
    }

    private static void call(long[] delaysUs, boolean parallel) throws IOException {
        if (delaysUs.length == 0) {
            return;
        }
        Backend b = BACKEND.get();
        if (b == null) {
            b = new Backend(Integer.parseInt(System.getenv("SIMLAB_BACKEND_PORT")));
            BACKEND.set(b);
        }
        try {
            if (parallel) {
                StringBuilder lines = new StringBuilder();
                for (long d : delaysUs) {
                    lines.append(b.nextId++).append(' ').append(d).append('\n');
                }
                b.out.write(lines.toString().getBytes(StandardCharsets.US_ASCII));
                for (int k = 0; k < delaysUs.length; k++) {
                    b.readLine();
                }
            } else {
                for (long d : delaysUs) {
                    b.out.write((b.nextId++ + " " + d + "\n").getBytes(StandardCharsets.US_ASCII));
                    b.readLine();
                }
            }
        } catch (IOException e) {
            closeBackend();
            throw e;
        }
    }

    /** Closes this thread's backend connection (a connection's thread is about to end). */
    static void closeBackend() {
        Backend b = BACKEND.get();
        BACKEND.remove();
        if (b != null) {
            try {
                b.socket.close();
            } catch (IOException ignored) {
                // Closing anyway.
            }
        }
    }
}
