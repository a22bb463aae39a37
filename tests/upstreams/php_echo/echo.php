<?php
// What PHP saw: every $_SERVER entry a client could have influenced (HTTP_*, the method, the URI, REMOTE_USER),
// and the route a front controller that re-parses the decoded URI would take (parse_url(rawurldecode(...))).
header('Content-Type: application/json');
header('X-Upstream: php');
$headers = [];
foreach ($_SERVER as $key => $value) {
    if (strncmp($key, 'HTTP_', 5) === 0) {
        $headers[$key] = $value;
    }
}
$route = parse_url(rawurldecode($_SERVER['REQUEST_URI'] ?? ''), PHP_URL_PATH);
echo json_encode([
    'upstream' => 'php',
    'method' => $_SERVER['REQUEST_METHOD'] ?? null,
    'path' => $_SERVER['REQUEST_URI'] ?? null,
    'route' => is_string($route) ? $route : null,
    'user' => $_SERVER['HTTP_X_USER_ID'] ?? null,
    'remote_user' => $_SERVER['REMOTE_USER'] ?? null,
    'host' => $_SERVER['HTTP_HOST'] ?? null,
    'headers' => $headers,
]);
