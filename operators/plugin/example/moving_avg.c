/*
 * An example onceflow plugin, in plain C against <onceflow/plugin.h> only (it never
 * links against onceflow). Two operators:
 *
 *   moving_avg  per key, the average of the last `window` values of the numeric field
 *               `field`; emits each input record with the average added as `out`
 *               (emit: updates), or one {<key fields>, out} per key at the end
 *               (emit: final). The last values live in host state, so every guarantee
 *               checkpoints and restores them.
 *   tag         stateless: adds the string field `field` = `value` to every record.
 *
 * Records arrive as JSON text; the small scanner below reads one top-level number
 * field, which is all these operators need (a real plugin would use a JSON library).
 *
 * Build: cc -shared -fPIC -I runtime/include -o moving_avg.so moving_avg.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onceflow/plugin.h"

static const onceflow_host* host;

/* ---- a minimal JSON scanner: enough to find one top-level field --------------------- */

static const char* skip_ws(const char* p, const char* e) {
  while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) ++p;
  return p;
}

/* p at '"': returns the position after the closing quote, or NULL. */
static const char* skip_string(const char* p, const char* e) {
  for (++p; p < e; ++p) {
    if (*p == '\\') {
      ++p;
    } else if (*p == '"') {
      return p + 1;
    }
  }
  return NULL;
}

static const char* skip_value(const char* p, const char* e) {
  if (p < e && *p == '"') return skip_string(p, e);
  int depth = 0;
  while (p < e) {
    if (*p == '"') {
      p = skip_string(p, e);
      if (p == NULL) return NULL;
      continue;
    }
    if (*p == '{' || *p == '[') {
      ++depth;
    } else if (*p == '}' || *p == ']') {
      if (depth == 0) return p;
      --depth;
    } else if (*p == ',' && depth == 0) {
      return p;
    }
    ++p;
  }
  return p;
}

/* 1: *out holds the number; 0: no such field; -1: the field is not a number. */
static int find_number(const char* json, size_t len, const char* field, double* out) {
  const char* e = json + len;
  const char* p = skip_ws(json, e);
  const size_t flen = strlen(field);
  if (p >= e || *p != '{') return 0;
  ++p;
  for (;;) {
    p = skip_ws(p, e);
    if (p >= e || *p != '"') return 0;
    const char* k = p + 1;
    p = skip_string(p, e);
    if (p == NULL) return 0;
    const int match = (size_t)(p - 1 - k) == flen && memcmp(k, field, flen) == 0;
    p = skip_ws(p, e);
    if (p >= e || *p != ':') return 0;
    p = skip_ws(p + 1, e);
    if (match) {
      char buf[64];
      const char* v = p;
      size_t n = 0;
      while (v < e && n < sizeof buf - 1 && strchr("+-.0123456789eE", *v) != NULL) buf[n++] = *v++;
      buf[n] = '\0';
      char* end = NULL;
      if (n == 0) return -1;
      *out = strtod(buf, &end);
      return *end == '\0' ? 1 : -1;
    }
    p = skip_value(p, e);
    if (p == NULL || p >= e || *p != ',') return 0;
    ++p;
  }
}

/* Appends `"name":<text>` to the JSON object `json` (len bytes): into buf, malloc'ed. */
static char* with_field(const char* json, size_t len, const char* name, const char* text,
                        size_t* out_len) {
  const char* end = json + len;
  while (end > json && end[-1] != '}') --end;
  if (end == json) return NULL;
  const size_t head = (size_t)(end - 1 - json);
  const char* q = json + head;
  while (q > json && (q[-1] == ' ' || q[-1] == '\n')) --q;
  const int empty = q > json && q[-1] == '{';
  const size_t cap = head + strlen(name) + strlen(text) + 8;
  char* buf = malloc(cap);
  if (buf == NULL) return NULL;
  memcpy(buf, json, head);
  *out_len = head + (size_t)snprintf(buf + head, cap - head, "%s\"%s\":%s}", empty ? "" : ",",
                                     name, text);
  return buf;
}

/* Emits `json` with the field `"name":<text>` added. */
static int emit_with_field(onceflow_ctx* ctx, const char* json, size_t len, const char* name,
                           const char* text) {
  size_t out_len = 0;
  char* out = with_field(json, len, name, text, &out_len);
  if (out == NULL) {
    host->set_error(ctx, "out of memory, or the record is not a JSON object");
    return ONCEFLOW_ERROR;
  }
  const int rc = host->emit(ctx, out, out_len);
  free(out);
  return rc;
}

/* ---- moving_avg ------------------------------------------------------------------ */

typedef struct {
  char field[128];
  char out[128];
  int window;
} moving_avg;

static void* moving_avg_create(onceflow_ctx* ctx) {
  moving_avg* m = calloc(1, sizeof *m);
  if (m == NULL) return NULL;
  snprintf(m->field, sizeof m->field, "%s", host->config_get(ctx, "field"));
  snprintf(m->out, sizeof m->out, "%s", host->config_get(ctx, "out"));
  m->window = atoi(host->config_get(ctx, "window"));
  if (m->window < 1 || m->window > 255) {
    host->set_error(ctx, "window must be between 1 and 255");
    free(m);
    return NULL;
  }
  return m;
}

/* State "last": the last values, oldest first, as decimal text "v1 v2 ...". */
static double average_after(onceflow_ctx* ctx, int window, double value) {
  double vals[256];
  int n = 0;
  const char* s = NULL;
  size_t len = 0;
  if (host->state_get(ctx, "last", 4, &s, &len)) {
    char buf[8192];
    if (len >= sizeof buf) len = sizeof buf - 1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    /* strtod, not strtok: instances run on several threads, and strtok is not
     * reentrant. */
    char* end = NULL;
    for (const char* p = buf; n < 255; p = end) {
      const double v = strtod(p, &end);
      if (end == p) break;
      vals[n++] = v;
    }
  }
  vals[n++] = value;
  const int first = n > window ? n - window : 0;
  char text[8192];
  size_t t = 0;
  double sum = 0;
  for (int i = first; i < n; ++i) {
    sum += vals[i];
    t += (size_t)snprintf(text + t, sizeof text - t, "%s%.17g", i == first ? "" : " ", vals[i]);
  }
  host->state_put(ctx, "last", 4, text, t);
  return sum / (n - first);
}

static int moving_avg_process(void* self, onceflow_ctx* ctx, int port, const char* json,
                              size_t len) {
  moving_avg* m = self;
  double v = 0;
  const int found = find_number(json, len, m->field, &v);
  if (found <= 0) {
    char msg[256];
    snprintf(msg, sizeof msg, "field '%s' is %s", m->field, found == 0 ? "missing" : "not a number");
    host->set_error(ctx, msg);
    return ONCEFLOW_RECORD_ERROR;
  }
  const double avg = average_after(ctx, m->window, v);
  if (host->emit_final(ctx)) return ONCEFLOW_OK;
  char num[64];
  snprintf(num, sizeof num, "%.12g", avg);
  return emit_with_field(ctx, json, len, m->out, num);
}

static int emit_key_average(void* arg, onceflow_ctx* ctx, const char* key_json, size_t key_len) {
  moving_avg* m = arg;
  const char* s = NULL;
  size_t len = 0;
  if (!host->state_get(ctx, "last", 4, &s, &len)) return ONCEFLOW_OK;
  char buf[8192];
  if (len >= sizeof buf) len = sizeof buf - 1;
  memcpy(buf, s, len);
  buf[len] = '\0';
  double sum = 0;
  int n = 0;
  char* end = NULL;
  for (const char* p = buf;; p = end) {
    const double v = strtod(p, &end);
    if (end == p) break;
    sum += v;
    ++n;
  }
  if (n == 0) return ONCEFLOW_OK;
  char num[64];
  snprintf(num, sizeof num, "%.12g", sum / n);
  return emit_with_field(ctx, key_json, key_len, m->out, num);
}

static int moving_avg_finish(void* self, onceflow_ctx* ctx) {
  if (!host->emit_final(ctx)) return ONCEFLOW_OK;
  return host->state_foreach(ctx, emit_key_average, self);
}

static void moving_avg_destroy(void* self) { free(self); }

static const onceflow_option moving_avg_options[] = {
    {"field", ONCEFLOW_OPTION_STRING, 1, NULL, "the numeric field to average"},
    {"window", ONCEFLOW_OPTION_INT, 0, "3", "how many of the key's last values to average (1..255)"},
    {"out", ONCEFLOW_OPTION_STRING, 0, "avg", "the output field holding the average"},
};

/* ---- tag ---------------------------------------------------------------------------- */

typedef struct {
  char field[128];
  char quoted[1024]; /* the value as a JSON string */
} tag;

static void* tag_create(onceflow_ctx* ctx) {
  tag* t = calloc(1, sizeof *t);
  if (t == NULL) return NULL;
  snprintf(t->field, sizeof t->field, "%s", host->config_get(ctx, "field"));
  const char* v = host->config_get(ctx, "value");
  size_t n = 0;
  t->quoted[n++] = '"';
  for (; *v != '\0' && n < sizeof t->quoted - 8; ++v) {
    if (*v == '"' || *v == '\\') t->quoted[n++] = '\\';
    if ((unsigned char)*v < 0x20) continue; /* control characters dropped */
    t->quoted[n++] = *v;
  }
  t->quoted[n++] = '"';
  t->quoted[n] = '\0';
  return t;
}

static int tag_process(void* self, onceflow_ctx* ctx, int port, const char* json, size_t len) {
  tag* t = self;
  return emit_with_field(ctx, json, len, t->field, t->quoted);
}

static void tag_destroy(void* self) { free(self); }

static const onceflow_option tag_options[] = {
    {"field", ONCEFLOW_OPTION_STRING, 1, NULL, "the field to add"},
    {"value", ONCEFLOW_OPTION_STRING, 1, NULL, "its (string) value"},
};

/* ---- the entry point ---------------------------------------------------------------- */

static const onceflow_operator operators[] = {
    {"moving_avg", "per key, the average of the last `window` values of a field",
     moving_avg_options, sizeof moving_avg_options / sizeof moving_avg_options[0],
     moving_avg_create, moving_avg_process, moving_avg_finish, moving_avg_destroy},
    {"tag", "add a constant string field to every record", tag_options,
     sizeof tag_options / sizeof tag_options[0], tag_create, tag_process, NULL, tag_destroy},
};

ONCEFLOW_PLUGIN_EXPORT int onceflow_plugin_init(const onceflow_host* h, onceflow_plugin* out) {
  if (h->abi_version != ONCEFLOW_PLUGIN_ABI_VERSION) return ONCEFLOW_ERROR;
  host = h;
  out->abi_version = ONCEFLOW_PLUGIN_ABI_VERSION;
  out->name = "example";
  out->version = "1.0";
  out->operators = operators;
  out->operator_count = sizeof operators / sizeof operators[0];
  return ONCEFLOW_OK;
}
