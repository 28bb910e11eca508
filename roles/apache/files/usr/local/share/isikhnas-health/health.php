<?php
// GET /health for the load balancer: 200 when this server can serve (and reach its database, when one is
// configured in /etc/isikhnas/health.php), 503 otherwise. Installed by the ansible role `apache`.
header('Content-Type: application/json');
header('Cache-Control: no-store');

$config = @include '/etc/isikhnas/health.php';
$out = ['status' => 'ok', 'host' => gethostname()];

if (!is_array($config) || ($config['dsn'] ?? '') === '') {
    $out['database'] = 'not configured';
} elseif (!function_exists('pg_connect')) {
    http_response_code(503);
    $out['status'] = 'fail';
    $out['database'] = 'no pgsql extension';
} else {
    $dsn = $config['dsn'] . ' connect_timeout=' . (int) ($config['timeout'] ?? 3);
    $conn = @pg_connect($dsn, PGSQL_CONNECT_FORCE_NEW);
    $result = $conn === false ? false : @pg_query($conn, 'SELECT pg_is_in_recovery(), inet_server_addr()');
    if ($result === false) {
        http_response_code(503);
        $out['status'] = 'fail';
        $out['database'] = 'unreachable';
    } else {
        $row = pg_fetch_row($result);
        $out['database'] = 'reachable';
        $out['database_role'] = $row[0] === 't' ? 'standby' : 'primary';
        $out['database_address'] = $row[1];
    }
    if ($conn !== false) {
        pg_close($conn);
    }
}

echo json_encode($out), "\n";
