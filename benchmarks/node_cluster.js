// Node's cluster module serving the same hello world, for comparison.
//   node node_cluster.js MODE WORKERS
// MODE: single (one process, no cluster), rr (cluster.SCHED_RR, Node's
// default on Linux) or none (cluster.SCHED_NONE: every worker accepts).
// Listens on 127.0.0.1, port 0, and prints "listening on PORT" once every
// worker listens.
'use strict';
const cluster = require('cluster');
const http = require('http');

const mode = process.argv[2] || 'rr';
const workers = parseInt(process.argv[3] || '2', 10);
const body = 'Hello, world!\n';

function serve(port, onListening) {
  const server = http.createServer((req, res) => {
    res.writeHead(200, {'Content-Type': 'text/plain'});
    res.end(body);
  });
  server.listen(port, '127.0.0.1', () => onListening(server.address().port));
}

if (mode === 'single') {
  serve(0, (port) => console.log(`listening on ${port}`));
} else if (cluster.isPrimary || cluster.isMaster) {
  cluster.schedulingPolicy = mode === 'none' ? cluster.SCHED_NONE : cluster.SCHED_RR;
  // Workers listen on the port the primary picks, so that they share it.
  const probe = require('net').createServer();
  probe.listen(0, '127.0.0.1', () => {
    const port = probe.address().port;
    probe.close(() => {
      let listening = 0;
      for (let i = 0; i < workers; i++) {
        const worker = cluster.fork({BENCH_PORT: String(port)});
        worker.on('listening', () => {
          listening += 1;
          if (listening === workers) console.log(`listening on ${port}`);
        });
      }
    });
  });
  const stop = () => { for (const id in cluster.workers) cluster.workers[id].kill(); process.exit(0); };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
} else {
  serve(parseInt(process.env.BENCH_PORT, 10), () => {});
}
