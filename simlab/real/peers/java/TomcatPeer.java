import jakarta.servlet.http.HttpServlet;
import jakarta.servlet.http.HttpServletRequest;
import jakarta.servlet.http.HttpServletResponse;
import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.logging.Level;
import java.util.logging.Logger;
import org.apache.catalina.Context;
import org.apache.catalina.connector.Connector;
import org.apache.catalina.startup.Tomcat;

/**
 * simlab's /work as a servlet in embedded Tomcat 10, on the NIO connector: a poller thread
 * watches every connection (idle keep-alive ones included) and hands each request to a pool of at
 * most maxThreads worker threads; connections beyond the pool wait in acceptCount.
 *
 * <p>Usage: java TomcatPeer PORT WORKERS BACKLOG BASEDIR.
 */
public final class TomcatPeer {
    private TomcatPeer() {}

    /** The servlet: a GET of /work does the work; anything else is an error status. */
    public static final class WorkServlet extends HttpServlet {
        private static final byte[] OK = "ok\n".getBytes(StandardCharsets.US_ASCII);

        @Override
        protected void service(HttpServletRequest req, HttpServletResponse resp) throws IOException {
            if (!req.getMethod().equals("GET")) {
                error(resp, 405, "only GET is served");
                return;
            }
            if (!req.getRequestURI().equals("/work")) {
                error(resp, 404, "only /work is served");
                return;
            }
            Work.Request request;
            try {
                request = Work.parse(req.getQueryString());
            } catch (Work.BadRequest e) {
                error(resp, 400, e.getMessage());
                return;
            }
            long serviceUs = Work.run(request);
            resp.setStatus(200);
            resp.setHeader("x-service-us", Long.toString(serviceUs));
            resp.setContentLength(OK.length);
            resp.getOutputStream().write(OK);
        }

        private static void error(HttpServletResponse resp, int status, String reason) throws IOException {
            byte[] body = (reason + "\n").getBytes(StandardCharsets.US_ASCII);
            resp.setStatus(status);
            resp.setContentLength(body.length);
            resp.getOutputStream().write(body);
        }
    }

    public static void main(String[] args) throws Exception {
        int port = Integer.parseInt(args[0]);
        int workers = Integer.parseInt(args[1]);
        int backlog = Integer.parseInt(args[2]);
        String base = args[3];
        Logger.getLogger("").setLevel(Level.WARNING); // no startup chatter on stderr

        Tomcat tomcat = new Tomcat();
        tomcat.setBaseDir(base);
        Connector connector = new Connector("org.apache.coyote.http11.Http11NioProtocol");
        connector.setPort(port);
        connector.setProperty("address", "127.0.0.1");
        connector.setProperty("maxThreads", Integer.toString(workers));
        connector.setProperty("acceptCount", Integer.toString(backlog));
        // Tomcat's defaults would cap connections at 8,192, close a connection after 100
        // requests, and drop idle clients after 20 s; the lab holds 10,000 idle ones.
        connector.setProperty("maxConnections", "-1");
        connector.setProperty("maxKeepAliveRequests", "-1");
        connector.setProperty("keepAliveTimeout", "-1");
        // Also the wait for a new connection's first request: it cannot be short either.
        connector.setProperty("connectionTimeout", "3600000");
        connector.setProperty("maxHttpHeaderSize", Integer.toString(64 * 1024));
        tomcat.setConnector(connector);

        Context context = tomcat.addContext("", new File(base).getAbsolutePath());
        Tomcat.addServlet(context, "work", new WorkServlet());
        context.addServletMappingDecoded("/", "work");
        tomcat.start();
        tomcat.getServer().await();
    }
}
