<?php
// The PHP side of the nginx + PHP-FPM recipe (docs/recipes.md#nginx-and-php): the user is REMOTE_USER, which
// only nginx sets (from the gateway's X-User-Id); never a header the client could have written.
header('Content-Type: application/json');
header('X-Upstream: php');
$user = $_SERVER['REMOTE_USER'] ?? '';
echo json_encode([
    'upstream' => 'php',
    'user' => $user === '' ? null : $user,
    'http_x_user_id' => $_SERVER['HTTP_X_USER_ID'] ?? null,
]);
