/**
 * consumer.js — the `consume` node's loop: claims tasks in batches and emits one msg per
 * task, never more than `concurrency` in flight.
 * @module consumer
 */
'use strict';

const { buildDebug } = require('./messages');

/**
 * the consumer's key of one attempt at a task
 * @private
 * @returns {string}
 */
const attemptKey = (task) => `${task.id}#${task.attempts}`;

/**
 * The `consume` source: claims tasks in batches and emits one msg per task
 * (`msg.payload` = the task's payload, `msg.task` = the task), never more than
 * `concurrency` in flight. A slot frees when any node settles the task with
 * updateTaskStatus, or when its lease runs out. While the queue is empty it waits for a
 * wake-up (an insert in this runtime, or PostgreSQL NOTIFY from another), polling at
 * least once a second. On stop, tasks in flight are left to their lease.
 */
class Consumer {
  /**
   * @param {object} node the Node-RED node (send, status, error)
   * @param {function(): Promise<Registry>} getRegistry the config node's open connection
   * @param {object} opts
   * @param {string} [opts.queue] default `default`
   * @param {(number|string)} [opts.concurrency] most tasks in flight, 1–1000, default 4
   * @param {(number|string)} [opts.leaseMs] lease of each claimed task, default 30000
   * @param {boolean} [opts.debug] add `msg._debug`
   * @param {string} opts.workerId the lease holder's id
   * @param {function(number): string} opts.statusText the status text for n in flight
   */
  constructor(node, getRegistry, opts) {
    this.node = node;
    this.getRegistry = getRegistry;
    this.queue = opts.queue || 'default';
    this.concurrency = Math.max(1, Math.min(1000, Number(opts.concurrency) || 4));
    this.leaseMs = Math.max(1000, Number(opts.leaseMs) || 30000);
    this.debug = opts.debug === true || opts.debug === 'true';
    this.workerId = opts.workerId;
    this.statusText = opts.statusText;
    this.inFlight = new Map();
    this.idleMs = 0;
    this.timer = null;
    this.stopped = false;
    // claims on their way to the database, and the slots they may fill
    this.claiming = 0;
    this.reserved = 0;
    this.empty = false;
    // one entry per attempt (`id#attempts`): a task that failed, came back after its
    // backoff and was claimed again before its first settle reached us holds two slots
    // until both are settled, never one
    this.onSettled = (id, task) => this.settle(attemptKey(task));
  }

  /** Starts polling. */
  start() {
    this.schedule(0);
  }

  /**
   * Polls after `ms` (0: on the next turn), unless a poll is already due.
   * @private
   */
  schedule(ms) {
    if (this.stopped || this.timer) return;
    const run = () => {
      this.timer = null;
      this.poll();
    };
    // setTimeout(0) waits at least 1 ms; a wake-up or a freed slot polls on the next turn
    if (ms > 0) {
      const t = setTimeout(run, ms);
      this.timer = { cancel: () => clearTimeout(t) };
    } else {
      const t = setImmediate(run);
      this.timer = { cancel: () => clearImmediate(t) };
    }
  }

  /**
   * Frees the slot of one attempt (`id#attempts`), settled or its lease run out.
   * @private
   */
  settle(key) {
    const lease = this.inFlight.get(key);
    if (lease === undefined) return;
    clearTimeout(lease);
    this.inFlight.delete(key);
    this.showStatus();
    this.schedule(0);
  }

  /**
   * Shows the number of tasks in flight.
   * @private
   */
  showStatus() {
    // a busy consumer settles thousands of tasks a second: the status (and its translated
    // text) follows at most every 250 ms, and always ends on the current count
    if (this.statusTimer) {
      this.statusDirty = true;
      return;
    }
    this.node.status({ fill: 'blue', shape: this.inFlight.size ? 'dot' : 'ring', text: this.statusText(this.inFlight.size) });
    this.statusTimer = setTimeout(() => {
      this.statusTimer = null;
      if (this.statusDirty && !this.stopped) {
        this.statusDirty = false;
        this.showStatus();
      }
    }, 250);
  }

  /**
   * One claim: fills free slots, or waits for work while the queue is empty.
   * @private
   */
  async poll() {
    // A busy consumer works as a pipeline: a claim takes at most a quarter of its slots
    // (at least 25, or all when fewer), and up to two claims are on their way at once,
    // so the database claims the next tasks while the flow runs the last ones, instead
    // of the two taking turns. When the last claim found nothing, one claimer waits for
    // work alone.
    if (this.stopped || this.claiming >= 2 || (this.claiming > 0 && this.empty)) return;
    const free = this.concurrency - this.inFlight.size - this.reserved;
    if (free <= 0) return; // a settle or an expired lease schedules the next poll
    this.claiming += 1;
    let held = Math.min(free, Math.max(Math.ceil(this.concurrency / 4), Math.min(this.concurrency, 25)));
    this.reserved += held;
    try {
      const registry = await this.getRegistry();
      if (this.registry !== registry) {
        if (this.registry) this.registry.off('settled', this.onSettled);
        this.registry = registry;
        registry.on('settled', this.onSettled);
      }
      const startedAt = Date.now();
      const t0 = this.debug ? performance.now() : 0;
      const r = await registry.run('claimTasks', { queue: this.queue, limit: held, leaseMs: this.leaseMs, workerId: this.workerId }, { debug: this.debug });
      this.reserved -= held;
      held = 0;
      this.empty = r.value.length === 0;
      if (this.stopped) return;
      for (const task of r.value) {
        const key = attemptKey(task);
        this.inFlight.set(key, setTimeout(() => this.settle(key), this.leaseMs));
        const msg = { payload: task.payload, task };
        if (this.debug) msg._debug = buildDebug('consume', startedAt, t0, r.debug);
        this.node.send(msg);
      }
      this.showStatus();
      if (r.value.length === 0 && !this.stopped) {
        // idle: sleep until woken by new work (same runtime, or NOTIFY on PostgreSQL);
        // the timeout is the polling safety net
        await registry.waitForTasks(this.queue, 1000);
      }
      this.idleMs = 0;
    } catch (err) {
      this.idleMs = Math.min(5000, Math.max(500, this.idleMs * 2));
      this.node.error(err); // a DatabaseError from the database layer, as it is
    } finally {
      this.reserved -= held;
      this.claiming -= 1;
    }
    this.schedule(this.idleMs);
  }

  /** Stops polling; tasks in flight stay leased until settled or expired. */
  stop() {
    this.stopped = true;
    if (this.timer) this.timer.cancel();
    clearTimeout(this.statusTimer);
    for (const lease of this.inFlight.values()) clearTimeout(lease);
    this.inFlight.clear();
    if (this.registry) this.registry.off('settled', this.onSettled);
  }
}

module.exports = { Consumer };
