/*
 * ws_fields.ino: live CPU load, GPU load and junction temperature from a Jetson, pushed over a
 * plain WebSocket, about 100 bytes per sample.
 *
 * Connects to ws://JETSON_HOST:JETSON_PORT/ws?fields=cpu.usage,gpu.usage,temperature.tj and
 * prints each frame. With fields= the server sends only those paths (same nesting as the full
 * document, plus "timestamp"), so there is little to receive and little to parse. The server
 * pushes one frame per sample (every second by default) and the latest one at once on connect.
 *
 * Board package : "esp32" by Espressif Systems (arduino-esp32) 3.x; 2.0.x works as well.
 * Libraries     : WebSockets by Markus Sattler (github.com/Links2004/arduinoWebSockets) 2.4 or
 *                 newer; ArduinoJson by Benoit Blanchon 7.x.
 * Server        : tegrastats-api with fields= on /ws (see docs/API.md).
 * Bytes (measured against `tegrastats-api run --simulate`, every simulated board):
 *                 handshake once: 286 B out, 195 B in; then per sample one text frame of
 *                 80-111 B (2 B frame header + the JSON); the server's WebSocket ping every
 *                 10 s costs 2 B in and 6 B out (the library answers it).
 *
 * Auth: if the server runs with --auth-token T, set AUTH_TOKEN to T; it is appended to the
 * URL as &token=T. (webSocket.setAuthorization("Bearer T") sends it as a header instead,
 * which keeps it out of the server's access log.)
 *
 * A frame looks like this; a key the board does not print is absent (no "tj" sensor on a
 * Xavier or a Nano) and a value it does not print is null (no GPU load on a Thor):
 * {"timestamp":"2026-11-30T05:16:21.961Z","cpu":{"usage":6.3},"gpu":{"usage":62},"temperature":{"tj":48.9}}
 */
#include <WiFi.h>
#include <WebSocketsClient.h>
#include <ArduinoJson.h>

// ------------------------------------------------------------------ settings
const char *WIFI_SSID = "your-ssid";
const char *WIFI_PASSWORD = "your-password";
const char *JETSON_HOST = "192.168.1.10";  // address of the Jetson running tegrastats-api
const uint16_t JETSON_PORT = 58090;
const char *AUTH_TOKEN = "";               // the server's --auth-token, or "" for none
const char *FIELDS = "cpu.usage,gpu.usage,temperature.tj";  // dotted paths of docs/API.md

WebSocketsClient webSocket;

// ------------------------------------------------------------------ helpers

static void printValue(const char *label, JsonVariantConst value, const char *unit) {
  Serial.print(label);
  Serial.print(' ');
  if (value.isNull()) {
    Serial.print("-");  // null or absent: tegrastats does not print it on this board
  } else {
    Serial.print(value.as<float>(), 1);
    Serial.print(unit);
  }
  Serial.print("  ");
}

static void onFrame(uint8_t *payload, size_t length) {
  JsonDocument doc;  // grows as needed; these frames are about 100 bytes
  DeserializationError error = deserializeJson(doc, payload, length);
  if (error) {
    Serial.printf("bad JSON: %s\n", error.c_str());
    return;
  }
  printValue("CPU", doc["cpu"]["usage"], " %");
  printValue("GPU", doc["gpu"]["usage"], " %");
  printValue("Tj", doc["temperature"]["tj"], " C");
  Serial.println();
}

static void onEvent(WStype_t type, uint8_t *payload, size_t length) {
  switch (type) {
    case WStype_CONNECTED:
      Serial.printf("connected: %s\n", (const char *)payload);
      break;
    case WStype_DISCONNECTED:
      // Also what a refused handshake looks like: 401 (token), 400 (unknown field), 503 (too
      // many clients). The library retries every setReconnectInterval().
      Serial.println("disconnected");
      break;
    case WStype_TEXT:
      onFrame(payload, length);
      break;
    default:
      break;  // pings are answered by the library; nothing else is sent by the server
  }
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

  String url = String("/ws?fields=") + FIELDS;
  if (AUTH_TOKEN[0] != '\0') {
    url += String("&token=") + AUTH_TOKEN;
  }
  webSocket.begin(JETSON_HOST, JETSON_PORT, url.c_str());  // sends Origin: file://, accepted
  webSocket.onEvent(onEvent);
  webSocket.setReconnectInterval(3000);  // after a refused or lost connection
  // Our own ping every 15 s; two missed pongs (3 s each) mean a dead link: drop and reconnect.
  // (The server pings every 10 s as well; the library answers those by itself.)
  webSocket.enableHeartbeat(15000, 3000, 2);
}

void loop() {
  webSocket.loop();
}
