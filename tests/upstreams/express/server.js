// Express 4 with method-override (the header forms) and Express's default case-insensitive,
// non-strict routing. Every answer says which handler ran and what identity it saw. Usage: node server.js PORT
const express = require('express');
const methodOverride = require('method-override');

const app = express();
for (const header of ['X-HTTP-Method-Override', 'X-HTTP-Method', 'X-Method-Override']) {
  app.use(methodOverride(header));
}

const report = (handler) => (req, res) => {
  res.set('X-Upstream', 'express').json({
    upstream: 'express', handler, method: req.method, original_method: req.originalMethod, path: req.path,
    user: req.headers['x-user-id'] ?? null, roles: req.headers['x-user-roles'] ?? null,
    host: req.headers.host ?? null, headers: req.headers,
  });
};

app.all(['/api/admin/users', '/admin/users'], report('admin'));
app.all(['/api/items/:id', '/api/*'], report('api'));
app.get('/items/:id', report('items.get'));
app.post('/items/:id', report('items.post'));
app.delete('/items/:id', report('items.delete'));
app.all('*', report('public'));

app.listen(Number(process.argv[2]), '127.0.0.1');
process.on('SIGTERM', () => process.exit(0));
