// The Kotlin coroutines of experiments/callbacks_vs_coroutines.py (kotlinx.coroutines):
// pending ones on the default dispatcher (as many threads as cores), hops on one
// thread (runBlocking's event loop), so that a hop's CPU is the dispatcher's own
// work, not idle workers spinning for tasks.
//
// Usage: Coats pending N     N coroutines suspended in delay(an hour), each holding its own index
//        Coats hops C K MS   warm up, print READY, wait for a line on stdin, then rounds of C concurrent
//                            coroutines each passing K times through the dispatcher (yield())
//                            until MS milliseconds have passed; print DONE with the rounds and
//                            the wall time, and hold until stopped.
import kotlinx.coroutines.*

const val HOUR_MS = 3_600_000L

@Volatile var sink = 0L

fun ready(t0: Long, extra: String = "") {
    val s = (System.nanoTime() - t0) / 1e9
    println("READY {\"create_s\": $s$extra}")
    System.out.flush()
}

suspend fun chain(k: Int): Int {
    repeat(k) { yield() }
    return k
}

fun round(c: Int, k: Int) = runBlocking {
    val jobs = List(c) { async { chain(k) } }
    sink += jobs.awaitAll().sum()
}

fun main(args: Array<String>) {
    when (args[0]) {
        "pending" -> {
            val n = args[1].toInt()
            val t0 = System.nanoTime()
            val jobs = List(n) { i -> GlobalScope.launch(Dispatchers.Default) { delay(HOUR_MS); sink += i } }
            ready(t0)
            Thread.sleep(HOUR_MS)
            jobs.size
        }
        "hops" -> {
            val (c, k, ms) = args.drop(1).map { it.toInt() }
            val warm = System.nanoTime()
            while (System.nanoTime() - warm < ms * 1_000_000L) round(c, k) // the JIT at work
            ready(System.nanoTime())
            readLine() // the measurer reads the CPU count, then sends a line
            val t0 = System.nanoTime()
            var rounds = 0
            while (System.nanoTime() - t0 < ms * 1_000_000L) { round(c, k); rounds++ }
            println("DONE {\"rounds\": $rounds, \"wall_s\": ${(System.nanoTime() - t0) / 1e9}}")
            System.out.flush()
            Thread.sleep(HOUR_MS)
        }
        else -> throw IllegalArgumentException("unknown mode ${args[0]}")
    }
}
