/*
 * summary_http.ino: poll a Jetson's tegrastats-api for its headline numbers over plain HTTP.
 *
 * Asks GET /api/summary every POLL_MS and prints CPU, GPU, RAM, the hottest sensor and the
 * board's input power. The simplest client: one short request, one small JSON object.
 *
 * Board package : "esp32" by Espressif Systems (arduino-esp32) 3.x; 2.0.x works as well.
 * Libraries     : ArduinoJson by Benoit Blanchon, 7.x (JsonDocument, DeserializationOption::Filter).
 *                 WiFi and HTTPClient come with the board package.
 * Server        : tegrastats-api with GET /api/summary (at most 256 bytes, see docs/API.md).
 * Bytes per poll (measured against `tegrastats-api run --simulate`, every simulated board):
 *                 request 103 B; response 390-402 B = 210 B of HTTP headers + a JSON body of
 *                 180-192 B (Content-Length always set); plus a TCP connect and close, as
 *                 HTTP/1.0 opens one connection per poll. At POLL_MS 2000: about 0.25 kB/s.
 *
 * Auth: if the server runs with --auth-token T, set AUTH_TOKEN to T; it goes in an
 * "Authorization: Bearer T" header. Leave it "" otherwise.
 *
 * The body looks like this (null means tegrastats did not print the value, e.g. no GPU
 * load on a Thor or no power rails without root):
 * {"timestamp":"2026-11-30T05:16:21.961Z","source":"tegrastats","cpu":6.3,"gpu":62,
 *  "ram_used":4412,"ram_total":7772,"swap_used":139,"temp_max":43.5,
 *  "temp_max_sensor":"cpu","power_mw":4067}
 */
#include <WiFi.h>
#include <HTTPClient.h>
#include <ArduinoJson.h>

// ------------------------------------------------------------------ settings
const char *WIFI_SSID = "your-ssid";
const char *WIFI_PASSWORD = "your-password";
const char *JETSON_HOST = "192.168.1.10";  // address of the Jetson running tegrastats-api
const uint16_t JETSON_PORT = 58090;
const char *AUTH_TOKEN = "";               // the server's --auth-token, or "" for none
const uint32_t POLL_MS = 2000;             // the server samples once a second by default

// ------------------------------------------------------------------ helpers

// Prints "label value unit", or "label -" when the server sent null (not printed by tegrastats).
static void printValue(const char *label, JsonVariantConst value, const char *unit, int decimals) {
  Serial.print(label);
  Serial.print(' ');
  if (value.isNull()) {
    Serial.print("-");
  } else {
    Serial.print(value.as<float>(), decimals);
    Serial.print(unit);
  }
  Serial.print("  ");
}

static void pollSummary() {
  HTTPClient http;
  http.useHTTP10(true);  // HTTP/1.0: no chunked body, so ArduinoJson can read the stream directly
  http.setTimeout(3000);
  String url = String("http://") + JETSON_HOST + ":" + JETSON_PORT + "/api/summary";
  if (!http.begin(url)) {
    Serial.println("bad URL");
    return;
  }
  if (AUTH_TOKEN[0] != '\0') {
    http.addHeader("Authorization", String("Bearer ") + AUTH_TOKEN);
  }
  int status = http.GET();
  if (status != HTTP_CODE_OK) {
    // 401: wrong or missing AUTH_TOKEN; 503: the server has no sample yet; < 0: no connection.
    Serial.printf("GET /api/summary: %d %s\n", status, status < 0 ? http.errorToString(status).c_str() : "");
    http.end();
    return;
  }

  // Keep only the keys this sketch shows; the others are skipped while parsing.
  JsonDocument filter;
  filter["source"] = true;
  filter["cpu"] = true;
  filter["gpu"] = true;
  filter["ram_used"] = true;
  filter["ram_total"] = true;
  filter["temp_max"] = true;
  filter["temp_max_sensor"] = true;
  filter["power_mw"] = true;

  JsonDocument doc;  // grows as needed: no fixed buffer to size
  DeserializationError error = deserializeJson(doc, http.getStream(), DeserializationOption::Filter(filter));
  http.end();
  if (error) {
    Serial.printf("bad JSON: %s\n", error.c_str());
    return;
  }

  printValue("CPU", doc["cpu"], " %", 1);
  printValue("GPU", doc["gpu"], " %", 0);
  Serial.printf("RAM %d/%d MB  ", doc["ram_used"] | 0, doc["ram_total"] | 0);
  printValue(doc["temp_max_sensor"] | "hottest", doc["temp_max"], " C", 1);
  printValue("power", doc["power_mw"], " mW", 0);
  if (strcmp(doc["source"] | "", "tegrastats") != 0) {
    Serial.print(" [not live: ");  // "simulator" or "replay": not this board's real figures
    Serial.print(doc["source"] | "?");
    Serial.print(']');
  }
  Serial.println();
}

// ------------------------------------------------------------------ Arduino

void setup() {
  Serial.begin(115200);
  WiFi.mode(WIFI_STA);
  WiFi.begin(WIFI_SSID, WIFI_PASSWORD);
  Serial.print("Wi-Fi");
  while (WiFi.status() != WL_CONNECTED) {
    delay(250);
    Serial.print('.');
  }
  Serial.printf(" up, IP %s\n", WiFi.localIP().toString().c_str());
}

void loop() {
  static uint32_t lastPoll = 0;
  if (lastPoll == 0 || millis() - lastPoll >= POLL_MS) {
    lastPoll = millis();
    if (WiFi.status() == WL_CONNECTED) {
      pollSummary();
    }
  }
  delay(10);
}
