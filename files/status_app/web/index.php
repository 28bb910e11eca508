<?php
// iSIKHNAS lab status: which database node answered this request, primary or standby, PostGIS and
// replication lag. Real queries on the writer and the reader connections written by the role `webapp`.
declare(strict_types=1);

$release = trim((string) @file_get_contents(__DIR__ . '/../VERSION')) ?: 'unknown';
$config = @include __DIR__ . '/../config/db.php';

function probe(string $dsn): array
{
    if ($dsn === '' || !function_exists('pg_connect')) {
        return ['ok' => false, 'error' => $dsn === '' ? 'not configured' : 'no pgsql extension'];
    }
    $conn = @pg_connect($dsn, PGSQL_CONNECT_FORCE_NEW);
    if ($conn === false) {
        return ['ok' => false, 'error' => 'unreachable'];
    }
    $sql = "SELECT coalesce(host(inet_server_addr()), 'local') AS node,
                   CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END AS role,
                   (SELECT extversion FROM pg_extension WHERE extname = 'postgis') AS postgis,
                   CASE WHEN pg_is_in_recovery()
                        THEN round(extract(epoch FROM now() - pg_last_xact_replay_timestamp())::numeric, 3)
                   END AS replay_lag_s,
                   (SELECT json_agg(json_build_object('client', client_addr, 'state', state,
                                                      'replay_lag_s', extract(epoch FROM replay_lag)))
                      FROM pg_stat_replication) AS standbys,
                   current_setting('server_version') AS server_version";
    $result = @pg_query($conn, $sql);
    $row = $result === false ? null : pg_fetch_assoc($result);
    pg_close($conn);
    if ($row === null || $row === false) {
        return ['ok' => false, 'error' => 'query failed'];
    }
    $row['standbys'] = json_decode($row['standbys'] ?? 'null', true) ?? [];
    return ['ok' => true] + $row;
}

$status = [
    'release' => $release,
    'web' => gethostname(),
    'writer' => probe(is_array($config) ? (string) ($config['writer'] ?? '') : ''),
    'reader' => probe(is_array($config) ? (string) ($config['reader'] ?? '') : ''),
];

if (($_GET['format'] ?? '') === 'json' || str_contains($_SERVER['HTTP_ACCEPT'] ?? '', 'application/json')) {
    header('Content-Type: application/json');
    header('Cache-Control: no-store');
    echo json_encode($status, JSON_PRETTY_PRINT), "\n";
    exit;
}
header('Cache-Control: no-store');
$h = static fn ($v): string => htmlspecialchars((string) $v, ENT_QUOTES);
?>
<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>iSIKHNAS status</title><link rel="stylesheet" href="style.css"></head>
<body>
<h1>iSIKHNAS status</h1>
<p>Release <strong id="release"><?= $h($status['release']) ?></strong> served by <strong><?= $h($status['web']) ?></strong></p>
<?php foreach (['writer', 'reader'] as $name): $db = $status[$name]; ?>
<h2><?= $h(ucfirst($name)) ?> connection</h2>
<?php if (!$db['ok']): ?>
<p class="bad" id="<?= $name ?>-error">database <?= $h($db['error']) ?></p>
<?php else: ?>
<table id="<?= $name ?>">
<tr><th>Node that answered</th><td><?= $h($db['node']) ?></td></tr>
<tr><th>Role</th><td><?= $h($db['role']) ?></td></tr>
<tr><th>PostgreSQL</th><td><?= $h($db['server_version']) ?></td></tr>
<tr><th>PostGIS</th><td><?= $h($db['postgis'] ?? 'not installed') ?></td></tr>
<?php if ($db['role'] === 'standby'): ?>
<tr><th>Replay lag (s)</th><td><?= $h($db['replay_lag_s'] ?? 'no transaction replayed yet') ?></td></tr>
<?php else: ?>
<tr><th>Standbys (replay lag, s)</th><td><?php foreach ($db['standbys'] as $s): ?><?= $h($s['client'] . ' ' . $s['state'] . ' ' . ($s['replay_lag_s'] ?? '0')) ?><br><?php endforeach; ?><?= $db['standbys'] ? '' : 'none' ?></td></tr>
<?php endif; ?>
</table>
<?php endif; ?>
<?php endforeach; ?>
</body>
</html>
