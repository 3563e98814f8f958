/*
 * onceflow plugin ABI — the one public interface of onceflow, in C.
 *
 * A plugin is a shared library that exports one function,
 *
 *     int onceflow_plugin_init(const onceflow_host* host, onceflow_plugin* out);
 *
 * onceflow loads it with dlopen(RTLD_NOW | RTLD_LOCAL) when a pipeline names it (node
 * type `plugin`, option `library`), calls onceflow_plugin_init once per process, and
 * checks out->abi_version against ONCEFLOW_PLUGIN_ABI_VERSION. The plugin never links
 * against onceflow: everything it needs from the host — emitting records, keyed state,
 * logging, its configuration — comes through the `onceflow_host` table of callbacks,
 * as SQLite hands its extensions `sqlite3_api_routines`. Keep the `host` pointer: it
 * stays valid for the life of the process.
 *
 * Records cross the ABI as JSON text: one JSON object per record (UTF-8, not
 * NUL-terminated, length given), in and out. JSON is language-neutral, needs no shared
 * record layout between host and plugin, and lets the host change its record
 * representation freely. The cost is one serialisation per input record and one parse per
 * emitted record — small next to the work a plugin operator usually does.
 *
 * State. An operator keeps its state in the host, through state_get / state_put /
 * state_delete, never in its own memory: the host snapshots it at every checkpoint,
 * restores it on recovery and resume, and `onceflow state get` shows it, under every
 * guarantee. State is keyed by the node's `key:` fields, as for the built-in keyed
 * operators: while process() runs, the state calls see the state of the current record's
 * key (the input is hash-partitioned on it, so one key is always handled by one
 * instance); within a key, values are named by `name` (any bytes; "" is fine), so one key
 * can hold several values. Without `key:` the whole stream is one key (use parallelism 1
 * for a stateful operator then). Values are opaque bytes; text (JSON, decimal numbers) is
 * easiest to inspect with `onceflow state get`.
 *
 * Threading. onceflow_plugin_init is called once, before any instance exists. Each
 * operator instance (one per `parallelism`) is driven by one thread: create, process,
 * finish and destroy of one instance are never called concurrently, but different
 * instances run on different threads at the same time, so an operator must not share
 * mutable globals between instances. Host callbacks may be called only from within a
 * call the host made on that instance (create, process, finish, and the state_foreach
 * callback), with the `ctx` that call received; `log` also accepts ctx == NULL.
 *
 * Lifetime. The host may destroy an instance and create a new one at any point between
 * calls (recovery, resume in another process): anything not in host state is lost then.
 * The library is never unloaded while the process runs.
 *
 * Build a plugin with only this header, e.g.
 *     cc -shared -fPIC -I/usr/local/include -o myplugin.so myplugin.c
 */
#ifndef ONCEFLOW_PLUGIN_H_
#define ONCEFLOW_PLUGIN_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI this header describes. A plugin reports the version it was built against in
 * onceflow_plugin.abi_version; the host refuses any other. */
#define ONCEFLOW_PLUGIN_ABI_VERSION 1

/* The name of the one exported entry point. */
#define ONCEFLOW_PLUGIN_INIT_SYMBOL "onceflow_plugin_init"

/* Opaque: the host's handle of one operator instance during one call. */
typedef struct onceflow_ctx onceflow_ctx;

/* Return codes of process, finish and the init function. */
enum {
  ONCEFLOW_OK = 0,
  /* A deterministic problem with this one record (a missing or malformed field): the
   * node's `on_error` policy applies (fail, skip or dead_letter). */
  ONCEFLOW_RECORD_ERROR = 1,
  /* The operator failed (process/finish), or the plugin cannot start (init, create):
   * the run fails, naming the node, the record and the message set with set_error. */
  ONCEFLOW_ERROR = 2
};

/* Log levels of onceflow_host.log. */
enum {
  ONCEFLOW_LOG_DEBUG = 0,
  ONCEFLOW_LOG_INFO = 1,
  ONCEFLOW_LOG_WARN = 2,
  ONCEFLOW_LOG_ERROR = 3
};

/* Types of configuration options. The host checks every `config:` value of a pipeline
 * against the operator's option table at validation time, so create() sees only
 * well-typed values. */
typedef enum onceflow_option_type {
  ONCEFLOW_OPTION_STRING = 0, /* any scalar, as text */
  ONCEFLOW_OPTION_INT = 1,    /* an integer */
  ONCEFLOW_OPTION_NUMBER = 2, /* an integer or a decimal */
  ONCEFLOW_OPTION_BOOL = 3,   /* true or false */
  ONCEFLOW_OPTION_LIST = 4,   /* a list of strings (one string = a one-item list) */
  ONCEFLOW_OPTION_MAP = 5     /* a map, passed through as JSON */
} onceflow_option_type;

/* One entry of an operator's option table. */
typedef struct onceflow_option {
  const char* name;
  onceflow_option_type type;
  int required;              /* non-zero: the pipeline must set it */
  const char* default_value; /* YAML scalar text, or NULL for none */
  const char* help;          /* one sentence, shown by `onceflow plugin inspect` */
} onceflow_option;

/* The callbacks the host offers. Appended to only: a plugin built against a later
 * header checks `size` before using a callback this host may not have. */
typedef struct onceflow_host {
  uint32_t abi_version; /* ONCEFLOW_PLUGIN_ABI_VERSION of the host */
  uint32_t size;        /* sizeof(onceflow_host) of the host */

  /* Emits one record (a JSON object, `len` bytes) downstream. Returns ONCEFLOW_OK, or
   * ONCEFLOW_ERROR when the text is not a JSON object (the host then fails the
   * operator: returning an error from the current call is still expected). */
  int (*emit)(onceflow_ctx* ctx, const char* json, size_t len);

  /* Keyed state of the current key (see "State" above). state_get returns 1 and sets
   * *value / *len to the stored bytes (valid until the next state call or the end of the
   * current call), or 0 when nothing is stored under `name`. state_put stores a copy.
   * state_delete returns 1 when something was removed. */
  int (*state_get)(onceflow_ctx* ctx, const char* name, size_t name_len, const char** value,
                   size_t* len);
  void (*state_put)(onceflow_ctx* ctx, const char* name, size_t name_len, const char* value,
                    size_t len);
  int (*state_delete)(onceflow_ctx* ctx, const char* name, size_t name_len);
  /* Calls fn once per key that has state, in key order (deterministic), with that key
   * made current — so state_get/put/delete inside fn act on it — and with the key's fields
   * as a JSON object (`{"user":"ann"}`; `{}` without `key:`). For finish(): emitting each
   * key's final value. Returns ONCEFLOW_OK, or the first non-zero value fn returned. */
  int (*state_foreach)(onceflow_ctx* ctx,
                       int (*fn)(void* arg, onceflow_ctx* ctx, const char* key_json,
                                 size_t key_len),
                       void* arg);

  /* Logs a line on onceflow's log (stderr), prefixed with the node's name. */
  void (*log)(onceflow_ctx* ctx, int level, const char* message);
  /* Sets the message the host reports when the current call returns ONCEFLOW_ERROR or
   * ONCEFLOW_RECORD_ERROR. */
  void (*set_error)(onceflow_ctx* ctx, const char* message);

  /* The node's `config:` map as a JSON object, defaults of the option table filled in
   * (NUL-terminated; valid for the life of the instance). */
  const char* (*config_json)(onceflow_ctx* ctx);
  /* One configuration value as text: a string as is, a number or bool as written, a list
   * or map as JSON; NULL when not set and without default. Valid for the life of the
   * instance. */
  const char* (*config_get)(onceflow_ctx* ctx, const char* name);
  /* Non-zero when the node has `emit: final`: emit each key's value in finish() only. */
  int (*emit_final)(onceflow_ctx* ctx);
} onceflow_host;

/* One operator a plugin provides. */
typedef struct onceflow_operator {
  const char* name;    /* what a pipeline's `name:` selects */
  const char* summary; /* one line for listings */
  const onceflow_option* options;
  size_t option_count;

  /* Creates an instance; returns NULL on failure (after set_error). Reads its
   * configuration through config_get / config_json. */
  void* (*create)(onceflow_ctx* ctx);
  /* One input record (JSON object, `len` bytes, not NUL-terminated) from input `port`
   * (index into the node's `input:` list). Emits any number of records. */
  int (*process)(void* self, onceflow_ctx* ctx, int port, const char* json, size_t len);
  /* Every input has ended for good (not called when a run is merely stopped): emit
   * what `emit: final` holds back. May be NULL. */
  int (*finish)(void* self, onceflow_ctx* ctx);
  /* Frees the instance. Host callbacks may not be called from here. */
  void (*destroy)(void* self);
} onceflow_operator;

/* What onceflow_plugin_init fills in. */
typedef struct onceflow_plugin {
  uint32_t abi_version; /* set to ONCEFLOW_PLUGIN_ABI_VERSION */
  const char* name;     /* the plugin's name */
  const char* version;  /* free text, may be NULL */
  const onceflow_operator* operators;
  size_t operator_count;
} onceflow_plugin;

/* The entry point every plugin exports. Returns ONCEFLOW_OK, or ONCEFLOW_ERROR (a
 * message may be logged through host->log with ctx NULL). Everything `out` points to
 * must stay valid while the process runs (static data). */
typedef int (*onceflow_plugin_init_fn)(const onceflow_host* host, onceflow_plugin* out);

#if defined(_WIN32)
#define ONCEFLOW_PLUGIN_EXPORT __declspec(dllexport)
#else
#define ONCEFLOW_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
}
#endif

#endif /* ONCEFLOW_PLUGIN_H_ */
