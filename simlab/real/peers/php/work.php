<?php
// simlab's /work under PHP-FPM, behind nginx (FastCGI): one request per child at a time.
//
// GET /work?cpu_ms=&io_ms=&calls=&fanout= burns cpu_ms of this process's CPU
// time (getrusage: an FPM child is single-threaded, so process = thread),
// then makes `calls` calls of io_ms each to simlab's backend over TCP, one
// after another or all at once (fanout=parallel), and answers "ok" with the
// microseconds spent in x-service-us. The rules for bad values are those of
// simlab/real/protocol.py: 400 for a bad query, 404 off /work, 405 for non-GET.

const MAX_CPU_MS = 60000.0;
const MAX_IO_MS = 600000.0;
const MAX_CALLS = 1000;
// Decimal numbers only (as float() takes them, less inf/nan, which are out of range anyway).
const NUMBER = '/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/';

final class BadRequest extends Exception
{
}

function reply(int $status, string $body, array $headers = []): void
{
    http_response_code($status);
    header('Content-Type: text/plain');
    header('Content-Length: ' . strlen($body));
    foreach ($headers as $name => $value) {
        header("$name: $value");
    }
    echo $body;
}

function number(string $text, string $name, float $high): float
{
    if (!preg_match(NUMBER, $text)) {
        throw new BadRequest("$name must be a number");
    }
    $value = (float) $text;
    if ($value < 0 || $value > $high) {
        throw new BadRequest("$name must be between 0 and $high");
    }
    return $value;
}

// The query, parsed by hand: $_GET would rename keys ("a.b" -> "a_b") and make arrays of "a[]".
function parse_work(string $query): array
{
    $params = [];
    foreach (explode('&', $query) as $field) {
        if ($field === '') {
            continue;
        }
        [$key, $value] = array_pad(explode('=', $field, 2), 2, '');
        $params[urldecode($key)] = urldecode($value); // the last value wins
    }
    foreach (array_keys($params) as $key) {
        if (!in_array($key, ['cpu_ms', 'io_ms', 'calls', 'fanout'], true)) {
            throw new BadRequest("unknown parameter $key");
        }
    }
    $calls = isset($params['calls']) ? number($params['calls'], 'calls', MAX_CALLS) : 0.0;
    if ($calls != floor($calls)) {
        throw new BadRequest('calls must be an integer');
    }
    $fanout = $params['fanout'] ?? 'sequential';
    if ($fanout !== 'sequential' && $fanout !== 'parallel') {
        throw new BadRequest('fanout must be sequential or parallel');
    }
    $io = array_map(
        fn (string $x): float => number($x, 'io_ms', MAX_IO_MS),
        explode(',', $params['io_ms'] ?? '0')
    );
    if (count($io) === 1) {
        $io = array_fill(0, (int) $calls, $io[0]);
    } elseif (count($io) !== (int) $calls) {
        throw new BadRequest('io_ms must be one value or one per call');
    }
    $cpu = isset($params['cpu_ms']) ? number($params['cpu_ms'], 'cpu_ms', MAX_CPU_MS) : 0.0;
    return [$cpu, array_map(fn (float $ms): int => (int) ($ms * 1000), $io), $fanout === 'parallel'];
}

function cpu_seconds(): float
{
    $u = getrusage();
    return $u['ru_utime.tv_sec'] + $u['ru_stime.tv_sec']
        + ($u['ru_utime.tv_usec'] + $u['ru_stime.tv_usec']) / 1e6;
}

function burn_cpu(float $ms): void
{
    if ($ms <= 0) {
        return;
    }
    $end = cpu_seconds() + $ms / 1000;
    $x = 0;
    while (cpu_seconds() < $end) {
        for ($i = 0; $i < 100; $i++) {
            $x++;
        }
    }
}

// One persistent connection per FPM child, reused from request to request,
// as a PHP application keeps its database link.
function backend()
{
    static $conn = null;
    if ($conn === null || feof($conn)) {
        $port = (int) getenv('SIMLAB_BACKEND_PORT');
        $context = stream_context_create(['socket' => ['tcp_nodelay' => true]]);
        $conn = stream_socket_client(
            "tcp://127.0.0.1:$port",
            $errno,
            $error,
            10,
            STREAM_CLIENT_CONNECT | STREAM_CLIENT_PERSISTENT,
            $context
        );
        if ($conn === false) {
            throw new RuntimeException("cannot reach the backend: $error");
        }
        stream_set_timeout($conn, 630);
    }
    return $conn;
}

function call_backend(array $delays_us, bool $parallel): void
{
    static $next_id = 0;
    if (!$delays_us) {
        return;
    }
    $conn = backend();
    $lines = [];
    foreach ($delays_us as $d) {
        $lines[] = ($next_id++) . " $d\n";
    }
    // Parallel: every call written at once, then every answer read.
    $batches = $parallel ? [$lines] : array_map(fn ($line) => [$line], $lines);
    foreach ($batches as $batch) {
        fwrite($conn, implode('', $batch));
        foreach ($batch as $_) {
            $answer = fgets($conn);
            if ($answer === false || !str_ends_with($answer, "\n")) {
                fclose($conn);
                throw new RuntimeException('the backend closed the connection');
            }
        }
    }
}

if ($_SERVER['REQUEST_METHOD'] !== 'GET') {
    reply(405, "only GET is served\n");
    return;
}
if ($_SERVER['DOCUMENT_URI'] !== '/work') {
    reply(404, "only /work is served\n");
    return;
}
try {
    [$cpu_ms, $delays_us, $parallel] = parse_work($_SERVER['QUERY_STRING'] ?? '');
} catch (BadRequest $e) {
    reply(400, $e->getMessage() . "\n");
    return;
}
$t0 = hrtime(true);
burn_cpu($cpu_ms);
call_backend($delays_us, $parallel);
reply(200, "ok\n", ['x-service-us' => intdiv(hrtime(true) - $t0, 1000)]);
