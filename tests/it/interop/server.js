// A VOLT-like control plane on the reference socket.io server (v4), used by
// tests/it/interop.rs to prove voltd's own codec speaks to the reference
// implementation. It validates registration like the real server (exactly
// teamClusterId + daemonPassword, ack {ok:false,error} on bad credentials),
// sends commands with socket.io acks, and exposes a small control API:
//   GET  /ctl/state        what the server saw
//   POST /ctl/command      {command, payload, withAck} → {response, ack}
//   POST /ctl/disconnect   server-side disconnect of the daemon socket
// Env: CLUSTER_ID, DAEMON_PASSWORD, MODE (answer|silent), PING_INTERVAL,
// PING_TIMEOUT (ms). Prints "listening <port>" once ready.
const http = require("http");
const { randomUUID } = require("crypto");
const { Server } = require("socket.io");

const CLUSTER_ID = process.env.CLUSTER_ID || "interop-cluster";
const PASSWORD = process.env.DAEMON_PASSWORD || "interop-password";
const MODE = process.env.MODE || "answer";
const MESSAGE = "team-cluster-daemon:message";

const state = {
  connections: 0,
  registrations: 0,
  rejectedRegistrations: 0,
  invalidRegistrations: 0,
  registerAcks: 0,
  pongs: 0,
  daemonCommands: [],
  heartbeats: [],
  disconnects: 0,
};
let daemon = null;
const pending = new Map();

function readBody(req) {
  return new Promise((resolve) => {
    let data = "";
    req.on("data", (c) => (data += c));
    req.on("end", () => resolve(data ? JSON.parse(data) : {}));
  });
}

async function control(req, res) {
  if (!req.url.startsWith("/ctl/")) return false;
  const reply = (code, body) => {
    res.writeHead(code, { "content-type": "application/json" });
    res.end(JSON.stringify(body));
  };
  if (req.url === "/ctl/state") {
    reply(200, { ...state, connected: !!daemon });
  } else if (req.url === "/ctl/disconnect" && req.method === "POST") {
    if (daemon) daemon.disconnect(true);
    reply(200, { ok: true });
  } else if (req.url === "/ctl/command" && req.method === "POST") {
    const body = await readBody(req);
    if (!daemon) return reply(409, { error: "no daemon" }), true;
    const requestId = randomUUID();
    const msg = { type: "command", requestId, command: body.command, responseType: "json", payload: body.payload || {} };
    let ack = null;
    const response = new Promise((resolve) => {
      pending.set(requestId, resolve);
      setTimeout(() => resolve(null), 5000);
    });
    if (body.withAck) {
      const acked = new Promise((resolve) => daemon.emit(MESSAGE, msg, (...args) => resolve(args)));
      ack = await Promise.race([acked, new Promise((r) => setTimeout(() => r(null), 5000))]);
    } else {
      daemon.emit(MESSAGE, msg);
    }
    reply(200, { response: await response, ack });
  } else {
    reply(404, { error: "no such route" });
  }
  return true;
}

const server = http.createServer((req, res) => {
  control(req, res).then((handled) => {
    if (!handled) {
      res.writeHead(404);
      res.end();
    }
  });
});
const io = new Server(server, {
  pingInterval: Number(process.env.PING_INTERVAL || 25000),
  pingTimeout: Number(process.env.PING_TIMEOUT || 20000),
});

io.on("connection", (socket) => {
  state.connections++;
  // Engine.IO pongs: each answers one of the server's pings.
  socket.conn.on("packet", (packet) => {
    if (packet.type === "pong") state.pongs++;
  });
  socket.on("team-cluster-daemon:register", (payload, ack) => {
    if (typeof ack === "function") state.registerAcks++;
    const keys = Object.keys(payload || {}).sort().join(",");
    if (keys !== "daemonPassword,teamClusterId") {
      state.invalidRegistrations++;
      socket.emit("error", { code: "Validation::InvalidInput", message: "Validation::InvalidInput", details: `keys: ${keys}` });
      if (typeof ack === "function") ack({ ok: true });
      return;
    }
    if (payload.teamClusterId !== CLUSTER_ID || payload.daemonPassword !== PASSWORD) {
      state.rejectedRegistrations++;
      if (typeof ack === "function") ack({ ok: false, error: "Invalid daemon credentials" });
      return;
    }
    state.registrations++;
    daemon = socket;
    socket.emit("team-cluster-daemon:registered", { teamClusterId: CLUSTER_ID });
    if (typeof ack === "function") ack({ ok: true });
  });
  socket.on(MESSAGE, (msg) => {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "response") {
      const resolve = pending.get(msg.requestId);
      if (resolve) {
        pending.delete(msg.requestId);
        resolve(msg);
      }
      return;
    }
    if (msg.type === "command" && socket === daemon) {
      state.daemonCommands.push(msg.command);
      if (msg.command === "runtime.heartbeat") state.heartbeats.push(msg.payload);
      if (MODE === "answer") {
        socket.emit(MESSAGE, {
          type: "response",
          requestId: msg.requestId,
          ok: true,
          status: 200,
          data: { status: "success", data: { teamCluster: { _id: CLUSTER_ID, status: "connected" } } },
        });
      }
    }
  });
  socket.on("disconnect", () => {
    if (socket === daemon) {
      daemon = null;
      state.disconnects++;
    }
  });
});

server.listen(Number(process.argv[2] || 0), "127.0.0.1", () => {
  console.log(`listening ${server.address().port}`);
});
