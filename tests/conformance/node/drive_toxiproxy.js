// Drives a Toxiproxy API with the npm client toxiproxy-node-client, as a Node user would, and
// prints what it saw as one JSON line. Usage: node drive_toxiproxy.js CLIENT_DIR API_URL ECHO_ADDR
"use strict";
const net = require("net");
const { Toxiproxy, ToxiproxyError } = require(process.argv[2]);
const [apiUrl, echo] = process.argv.slice(3);

function roundTrip(address) {
  const [host, port] = address.split(":");
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const sock = net.connect(Number(port), host, () => sock.write("ping"));
    sock.setTimeout(10000, () => reject(new Error("no echo within 10 s")));
    sock.on("data", () => { sock.destroy(); resolve(Number(process.hrtime.bigint() - started) / 1e6); });
    sock.on("error", reject);
  });
}

(async () => {
  const out = {};
  const tp = new Toxiproxy(apiUrl);
  out.version = await tp.getVersion();
  const proxy = await tp.createProxy({ name: "node_client", listen: "127.0.0.1:0", upstream: echo });
  out.created = proxy.toJson();
  const toxic = await proxy.addToxic({ type: "latency", stream: "downstream", toxicity: 1,
                                       attributes: { latency: 300, jitter: 0 } });
  out.toxic = toxic.toJson();
  out.rttWithToxicMs = await roundTrip(proxy.listen);
  const updated = await toxic.update({ toxicity: 1, attributes: { latency: 0, jitter: 0 } });
  out.updated = updated.toJson();
  out.fetched = (await proxy.getToxic(toxic.name)).toJson();
  out.listed = Object.keys(await tp.getAll());
  const disabled = await proxy.update({ enabled: false, listen: proxy.listen, upstream: echo });
  out.disabled = disabled.toJson().enabled;
  try {
    await proxy.addToxic({ type: "latency", stream: "downstream", toxicity: 1, attributes: { latency: 1 } });
    out.duplicate = "accepted";
  } catch (e) {
    out.duplicate = e instanceof ToxiproxyError ? "ToxiproxyError" : String(e);
  }
  await tp.reset();
  out.afterReset = (await tp.get("node_client")).toJson();
  out.toxicsAfterReset = await (await fetch(`${apiUrl}/proxies/node_client/toxics`)).json();
  await proxy.remove();
  out.removed = !Object.keys(await tp.getAll()).includes("node_client");
  console.log(JSON.stringify(out));
})().catch((e) => { console.error(e && e.stack || String(e)); process.exit(1); });
