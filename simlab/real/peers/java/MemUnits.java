import java.util.concurrent.CountDownLatch;

/**
 * The JVM unit of {@code simlab measure memory --runtime jvm}: N idle platform threads, held until
 * the lab stops the process.
 *
 * <p>Usage: java [-Xss256k] MemUnits thread N. Each thread parks on a latch, as a thread blocked
 * waiting for work does; its stack is the JVM's default or -Xss. Once all N run, it prints
 * {@code READY {"create_s": ...}} (the time taken to create and start them).
 */
public final class MemUnits {
    private MemUnits() {}

    public static void main(String[] args) throws InterruptedException {
        if (!args[0].equals("thread")) {
            throw new IllegalArgumentException("unknown unit " + args[0]);
        }
        int n = Integer.parseInt(args[1]);
        CountDownLatch gate = new CountDownLatch(1);
        CountDownLatch started = new CountDownLatch(n);
        long t0 = System.nanoTime();
        for (int k = 0; k < n; k++) {
            Thread t = new Thread(() -> {
                started.countDown();
                try {
                    gate.await();
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            });
            t.start();
        }
        started.await();
        System.out.printf("READY {\"create_s\": %.9f}%n", (System.nanoTime() - t0) / 1e9);
        System.out.flush();
        gate.await(); // until the lab stops the process
    }
}
