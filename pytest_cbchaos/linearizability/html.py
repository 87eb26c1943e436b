"""Self-contained HTML timeline of a checked history (docs/linearizability-design.md#html-timeline), Porcupine-style.

One file: inline CSS/JS, data embedded as JSON in ``<script type="application/json">`` with
``<`` escaped; every user value is inserted with ``textContent`` (never as HTML). A section per
partition (failing first) plus an "all ops" view; one lane per process grouped under its
worker; a nemesis lane; op bars from invoke to return (``ok`` solid, ``fail`` grey outline,
``info`` fading to the right edge with an infinity marker); fault windows shaded across lanes;
linearization points of the (longest) linearizable prefix as connected ticks; the first
unplaceable op in red with its attempts; hover tooltips, click to pin; zoom and pan.
"""

from __future__ import annotations

import html as _html
import json
from pathlib import Path
from typing import Any

from ..history.ops import INF
from ..history.store import History
from .checker import LinearizabilityResult, Verdict, _jsonable


def _scale(ops: list[Any], faults: list[dict[str, Any]]) -> tuple[float, str]:
    tmax = 0.0
    for op in ops:
        tmax = max(tmax, op.call, op.ret if op.ret != INF else 0)
    if tmax > 1e6:
        return 1e6, "ms"
    return 1.0, "t"


def _scaled_window(window: dict[str, Any] | None, div: float) -> dict[str, Any] | None:
    """The minimal window with its cut in the page's time unit (``cut``) beside the raw ``cut_ns``."""
    if window is None:
        return None
    return {**window, "cut": window["cut_ns"] / div}


def timeline_data(result: LinearizabilityResult, *, history: History | None = None, title: str = "",
                  recheck: str = "", seed: Any = None, backends: Any = None) -> dict[str, Any]:
    """The JSON document the page renders (also useful for reports)."""
    model_describe = None
    faults = list(history.faults) if history is not None else []
    div, unit = _scale(result.ops, faults)
    parts = sorted(result.partitions.values(),
                   key=lambda p: (p.verdict is not Verdict.ILLEGAL, p.verdict is not Verdict.UNKNOWN,
                                  repr(p.key)))
    # map invoke_index -> (partition key, partition op) for per-op annotations
    by_index: dict[int, dict[str, Any]] = {}
    psections = []
    for p in parts:
        cx = p.counterexample or {}
        fu = cx.get("first_unplaceable") or {}
        lin = []
        states_after = {}
        if p.linearization is not None:
            lin = [p.partition_ops[i].invoke_index for i in p.linearization]
        elif cx.get("longest_prefix"):
            lin = [e["index"] for e in cx["longest_prefix"]]
            states_after = {e["index"]: e["state_after"] for e in cx["longest_prefix"]}
        for op in p.partition_ops:
            by_index[op.invoke_index] = {"partition": _key(p.key)}
        for k, idx in enumerate(lin):
            by_index.setdefault(idx, {})["lin"] = k
            if idx in states_after:
                by_index[idx]["after"] = states_after[idx]
                by_index[idx]["before"] = states_after.get(lin[k - 1], "") if k else ""
        psections.append({
            "key": _key(p.key), "verdict": p.verdict.value, "ops": p.ops, "required": p.required,
            "steps": p.steps, "cache": p.cache_entries, "elapsed_ms": round(p.elapsed_s * 1e3, 3),
            "best": p.best_prefix_len, "reason": p.reason, "lin": lin,
            "failing": fu.get("index"), "failing_state": fu.get("state"),
            "failing_describe": fu.get("describe"),
            "bug_class": (fu.get("bug_class") or {}).get("message"),
            "attempts": cx.get("attempts", []), "window": _scaled_window(cx.get("minimal_window"), div)})
    ops_out = []
    for op in result.ops:
        d = by_index.get(op.invoke_index, {})
        desc = model_describe(op) if model_describe else _describe(op)
        lat = None if op.ret == INF else (op.ret - op.call) / div
        ops_out.append({
            "i": op.invoke_index, "p": _key(op.process),
            "w": op.extras.get("worker", _worker(op.process, result)), "f": op.f,
            "d": desc, "c": op.call / div, "r": None if op.ret == INF else op.ret / div,
            "lat": lat, "s": op.status, "k": _key(op.key), "part": d.get("partition"),
            "lin": d.get("lin"), "before": d.get("before"), "after": d.get("after"),
            "err": _jsonable(op.error), "faults": op.extras.get("faults", [])})
    fw = [{"id": w.get("id"), "kind": w.get("kind"), "target": w.get("target"),
           "params": _jsonable(w.get("params")), "s": (w.get("start_ns") or 0) / div,
           "e": None if w.get("end_ns") is None else w["end_ns"] / div} for w in faults]
    crashed = sum(op.status == "info" for op in result.ops)
    return {"title": title, "verdict": result.verdict.value, "model": result.model,
            "unit": unit, "n_ops": len(result.ops), "crashed": crashed,
            "elapsed_ms": round(result.elapsed_s * 1e3, 3), "recheck": recheck,
            "seed": _jsonable(seed), "backends": _jsonable(backends), "partitions": psections,
            "ops": ops_out, "faults": fw}


def _key(k: Any) -> Any:
    return k if k is None or isinstance(k, (str, int, float, bool)) else repr(k)


def _worker(process: Any, result: LinearizabilityResult) -> Any:
    return process


def _describe(op: Any) -> str:
    out = "?" if op.unknown else json.dumps(_jsonable(op.output))
    inp = "" if op.input is None else json.dumps(_jsonable(op.input))
    key = f"[{op.key}]" if op.key is not None else ""
    return f"{op.f}{key}({inp}) -> {out}"


def render_timeline(result: LinearizabilityResult, **kw: Any) -> str:
    data = timeline_data(result, **kw)
    blob = json.dumps(data, separators=(",", ":"), allow_nan=False, default=repr)
    blob = blob.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    title = _html.escape(f"cbchaos timeline: {data['title'] or data['model']}")
    return _TEMPLATE.replace("__TITLE__", title).replace("__DATA__", blob)


def write_timeline(result: LinearizabilityResult, path: str | Path, **kw: Any) -> Path:
    """Write ``timeline.html`` for ``result``; returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(render_timeline(result, **kw), encoding="utf-8")
    return p


_TEMPLATE = r"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{font:13px/1.4 system-ui,sans-serif;margin:0;color:#222;background:#fafafa}
header{padding:10px 16px;background:#fff;border-bottom:1px solid #ddd}
.badge{display:inline-block;padding:2px 10px;border-radius:4px;color:#fff;font-weight:700}
.badge.ok{background:#2e7d32}.badge.illegal{background:#c62828}.badge.unknown{background:#ef6c00}
.meta span{margin-right:14px}.meta code{background:#eee;padding:1px 4px}
section{margin:10px 16px;background:#fff;border:1px solid #ddd;padding:8px}
section h2{font-size:14px;margin:4px 0}
.svgwrap{overflow-x:auto;border-top:1px solid #eee}
svg text{font-size:11px;font-family:monospace}
.lane-label{fill:#555}.op rect{stroke-width:1}
.op.ok rect{fill:#90caf9;stroke:#1e88e5}.op.fail rect{fill:none;stroke:#9e9e9e;stroke-dasharray:3 2}
.op.info rect{fill:url(#fade);stroke:#8e24aa}.op.failing rect{fill:#e53935;stroke:#b71c1c;stroke-width:2}
.op.hl rect{stroke:#000;stroke-width:2}.op.pinned rect{stroke:#ff6f00;stroke-width:3}
.fault{fill:#ffcc80;opacity:.35}.fault-label{fill:#e65100}
.lin{fill:none;stroke:#43a047;stroke-width:1.5}.lintick{stroke:#43a047;stroke-width:2}
#tip{position:fixed;pointer-events:none;background:#263238;color:#fff;padding:6px 8px;border-radius:4px;
 font:12px monospace;white-space:pre;display:none;z-index:9;max-width:60vw}
.attempts li{font-family:monospace}.controls button{margin-right:4px}
</style></head><body>
<script type="application/json" id="cbchaos-data">__DATA__</script>
<header><div><span id="badge" class="badge"></span> <b id="title"></b></div>
<div class="meta" id="meta"></div>
<div class="controls"><button id="zin">zoom +</button><button id="zout">zoom -</button>
<button id="zreset">reset</button> <a href="#first-error" id="jump">jump to first error</a></div></header>
<main id="main"></main><div id="tip"></div>
<script>
(function(){
"use strict";
var D=JSON.parse(document.getElementById("cbchaos-data").textContent);
var NS="http://www.w3.org/2000/svg", zoom=1, pinned=null, tip=document.getElementById("tip");
function el(t,a,p){var e=document.createElementNS(NS,t);for(var k in a)e.setAttribute(k,a[k]);if(p)p.appendChild(e);return e;}
function h(t,txt,p,cls){var e=document.createElement(t);if(txt!=null)e.textContent=txt;if(cls)e.className=cls;if(p)p.appendChild(e);return e;}
var b=document.getElementById("badge");b.textContent=D.verdict.toUpperCase();b.className="badge "+D.verdict;
document.getElementById("title").textContent=D.title||D.model;
var meta=document.getElementById("meta");
[["model",D.model],["ops",D.n_ops],["crashed",D.crashed],["check",D.elapsed_ms+" ms"],["seed",D.seed],
 ["backends",D.backends?JSON.stringify(D.backends):null]].forEach(function(kv){if(kv[1]!=null)h("span",kv[0]+": "+kv[1],meta);});
if(D.recheck){var s=h("span","re-check: ",meta);h("code",D.recheck,s);}
var tmax=0;D.ops.forEach(function(o){tmax=Math.max(tmax,o.c,o.r==null?o.c:o.r);});
D.faults.forEach(function(f){tmax=Math.max(tmax,f.s,f.e==null?f.s:f.e);});
tmax=tmax*1.05+1;
var byIdx={};D.ops.forEach(function(o){byIdx[o.i]=o;});
function fmt(x){return x==null?"\u221e":(Math.round(x*1000)/1000)+" "+D.unit;}
function showTip(o,ev){
  var t=o.d+"\nprocess "+o.p+(o.k!=null?"  key "+o.k:"")+"\nstatus "+o.s+"\ncall "+fmt(o.c)+"  return "+fmt(o.r)+
   (o.lat!=null?"  latency "+fmt(o.lat):"")+(o.before!=null?"\nstate before: "+o.before:"")+(o.after!=null?"\nstate after: "+o.after:"")+
   (o.lin!=null?"\nlinearized #"+o.lin:"")+(o.err?"\nerror: "+JSON.stringify(o.err):"")+(o.faults&&o.faults.length?"\nfaults: "+o.faults.join(","):"");
  tip.textContent=t;tip.style.display="block";tip.style.left=(ev.clientX+12)+"px";tip.style.top=(ev.clientY+12)+"px";}
function hideTip(){tip.style.display="none";}
var svgs=[];
function draw(sec,ops,part){
  var lanes={},order=[];
  ops.forEach(function(o){var k=String(o.p);if(!(k in lanes)){lanes[k]=order.length;order.push(o);}});
  order.sort(function(a,b){return (a.w>b.w)-(a.w<b.w)||(a.p>b.p)-(a.p<b.p);});
  order.forEach(function(o,i){lanes[String(o.p)]=i+1;});
  var LH=22,left=110,W=Math.max(900,ops.length*14),H=(order.length+2)*LH+24;
  var wrap=h("div",null,sec,"svgwrap");
  var svg=el("svg",{width:left+W+20,height:H,"data-w":W},wrap);
  var defs=el("defs",{},svg),g=el("linearGradient",{id:"fade"},defs);
  el("stop",{offset:"0%","stop-color":"#ce93d8"},g);el("stop",{offset:"100%","stop-color":"#ce93d8","stop-opacity":"0"},g);
  var body=el("g",{"class":"body"},svg);
  function X(t){return left+(t/tmax)*W*zoom;}
  function render(){
    while(body.firstChild)body.removeChild(body.firstChild);
    svg.setAttribute("width",left+W*zoom+20);
    var lbl=el("text",{x:4,y:LH-6,"class":"lane-label"},body);lbl.textContent="nemesis";
    D.faults.forEach(function(f){
      var x0=X(f.s),x1=f.e==null?X(tmax):X(f.e);
      el("rect",{x:x0,y:4,width:Math.max(2,x1-x0),height:H-8,"class":"fault"},body);
      var t=el("text",{x:x0+2,y:LH-6,"class":"fault-label"},body);t.textContent=f.kind+" "+(f.target||"")+" "+JSON.stringify(f.params||{});});
    order.forEach(function(o,i){var t=el("text",{x:4,y:(i+2)*LH-6,"class":"lane-label"},body);
      t.textContent=(o.w!==o.p&&o.w!=null?"w"+o.w+" ":"")+"p"+o.p;});
    var pts=[];
    ops.forEach(function(o){
      var y=lanes[String(o.p)]*LH+4,x0=X(o.c),x1=o.r==null?X(tmax):X(o.r);
      var cls="op "+o.s+(part&&part.failing===o.i?" failing":"");
      var gg=el("g",{"class":cls,"data-index":o.i},body);
      if(part&&part.failing===o.i)gg.setAttribute("id","first-error");
      el("rect",{x:x0,y:y,width:Math.max(3,x1-x0),height:LH-8,rx:2},gg);
      if(o.r==null){var inf=el("text",{x:x1-12,y:y+11},gg);inf.textContent="\u221e";}
      var room=Math.floor((Math.max(3,x1-x0)-(o.r==null?16:4))/7);
      if(room>=3){var tt=el("text",{x:x0+3,y:y+11},gg);tt.textContent=o.d.length>room?o.d.slice(0,room-1)+"\u2026":o.d;}
      gg.addEventListener("mousemove",function(ev){showTip(o,ev);});
      gg.addEventListener("mouseleave",function(){if(pinned!==o)hideTip();});
      gg.addEventListener("mouseenter",function(){highlight(o,true);});
      gg.addEventListener("mouseout",function(){highlight(o,false);});
      gg.addEventListener("click",function(ev){pinned=(pinned===o?null:o);
        document.querySelectorAll(".op.pinned").forEach(function(e){e.classList.remove("pinned");});
        if(pinned){gg.classList.add("pinned");showTip(o,ev);}});
    });
    if(part&&part.lin&&part.lin.length){
      var last=-Infinity;
      part.lin.forEach(function(idx){var o=byIdx[idx];if(!o)return;var p=Math.max(last,o.c);
        if(o.r!=null)p=Math.min(p,o.r);last=p;var y=lanes[String(o.p)]*LH+LH/2;pts.push(X(p)+","+y);
        el("line",{x1:X(p),x2:X(p),y1:y-7,y2:y+7,"class":"lintick"},body);});
      el("polyline",{points:pts.join(" "),"class":"lin"},body);
    }
  }
  function highlight(o,on){body.querySelectorAll(".op").forEach(function(e){var x=byIdx[e.getAttribute("data-index")];
    if(x&&(x.p===o.p||(o.k!=null&&x.k===o.k)))e.classList.toggle("hl",on);});}
  render();svgs.push(render);
}
var main=document.getElementById("main"),firstErr=null;
D.partitions.forEach(function(p){
  var sec=h("section",null,main);
  h("h2",(p.key==null?"partition":"partition "+JSON.stringify(p.key))+": "+p.verdict.toUpperCase()+
    "  ("+p.ops+" ops, "+p.required+" required, best prefix "+p.best+", "+p.steps+" steps, "+p.cache+" cache entries, "+p.elapsed_ms+" ms"+(p.reason?", "+p.reason:"")+")",sec);
  if(p.failing!=null){firstErr=firstErr||p;
    h("div","first unplaceable op: #"+p.failing+" "+(p.failing_describe||"")+" in state "+(p.failing_state||""),sec,"failing-note");
    if(p.bug_class)h("div","bug class: "+p.bug_class,sec,"failing-note");
    var ul=h("ul",null,sec,"attempts");p.attempts.forEach(function(a){h("li","#"+a.index+" "+a.describe+" in "+a.state+": "+a.explain,ul);});
    if(p.window)h("div","minimal illegal window: up to "+fmt(p.window.cut)+" ("+p.window.ops.length+" ops)",sec);}
  var ops=D.ops.filter(function(o){return o.part===p.key&&o.s!=="fail";});
  if(ops.length<=2000)draw(sec,ops,p);
});
var all=h("section",null,main);h("h2","all ops ("+D.ops.length+", fail ops in grey are excluded from the check)",all);
draw(all,D.ops,firstErr);
if(!firstErr){var j=document.getElementById("jump");j.parentNode.removeChild(j);}
function rz(){svgs.forEach(function(r){r();});}
document.getElementById("zin").onclick=function(){zoom*=1.5;rz();};
document.getElementById("zout").onclick=function(){zoom=Math.max(.2,zoom/1.5);rz();};
document.getElementById("zreset").onclick=function(){zoom=1;rz();};
document.body.setAttribute("data-rendered","1");
})();
</script></body></html>
"""
