/**
 * Node types the benchmark wires around the database-connector node in a real Node-RED
 * runtime: `bench-sink` hands every msg to a hook the bench sets, `bench-relay` marks a
 * consumed task completed (msg.payload = {status: 'completed'}) and passes it on, like
 * the worker of a real flow would after doing its work.
 */
'use strict';

module.exports = function register(RED) {
  function BenchSink(config) {
    RED.nodes.createNode(this, config);
    this.hook = null;
    this.on('input', (msg, send, done) => {
      if (this.hook) this.hook(msg);
      done();
    });
  }
  RED.nodes.registerType('bench-sink', BenchSink);

  function BenchRelay(config) {
    RED.nodes.createNode(this, config);
    this.hook = null;
    this.on('input', (msg, send, done) => {
      if (this.hook) this.hook(msg);
      msg.payload = { status: 'completed' };
      send(msg);
      done();
    });
  }
  RED.nodes.registerType('bench-relay', BenchRelay);
};
