/*
 * socketio.ino: the Jetson's tegrastats_update events over Socket.IO, for projects that
 * already speak Socket.IO. Heavier than ws_fields.ino: every event carries the whole document.
 *
 * Connects with arduinoWebSockets' SocketIOclient to /socket.io/ asking for Engine.IO
 * protocol 4 (the library defaults to EIO=3, which the server, python-engineio 4, refuses),
 * joins the default namespace, and prints a few fields of each tegrastats_update event.
 *
 * Board package : "esp32" by Espressif Systems (arduino-esp32) 3.x; 2.0.x works as well.
 * Libraries     : WebSockets by Markus Sattler (github.com/Links2004/arduinoWebSockets) 2.4 or
 *                 newer (its EIO=4 support: "2probe" on upgrade, server pings answered);
 *                 ArduinoJson by Benoit Blanchon 7.x.
 * Server        : tegrastats-api (Socket.IO at /socket.io/, event tegrastats_update).
 * Bytes (measured against `tegrastats-api run --simulate`, every simulated board):
 *                 connection setup once: 485 B out, 659 B in (an Engine.IO polling handshake,
 *                 then the WebSocket upgrade on the same connection, probe, namespace join);
 *                 then per sample one frame of 907-1847 B (the whole document: 0.9-1.0 kB
 *                 on TX1, Nano and Xavier NX, 1.2-1.3 kB on TX2, Orin Nano/NX and AGX Xavier,
 *                 1.7-1.85 kB on AGX Orin and Thor); the Engine.IO ping every 10 s costs
 *                 3 B in and 7 B out.
 *                 The library keeps a whole frame in RAM while it is parsed: reserve 4 kB.
 *
 * Auth: if the server runs with --auth-token T, set AUTH_TOKEN to T; it is appended to the
 * URL as &token=T.
 */
#include <WiFi.h>
#include <WebSocketsClient.h>
#include <SocketIOclient.h>
#include <ArduinoJson.h>

// ------------------------------------------------------------------ settings
const char *WIFI_SSID = "your-ssid";
const char *WIFI_PASSWORD = "your-password";
const char *JETSON_HOST = "192.168.1.10";  // address of the Jetson running tegrastats-api
const uint16_t JETSON_PORT = 58090;
const char *AUTH_TOKEN = "";               // the server's --auth-token, or "" for none

SocketIOclient socketIO;

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

// payload is the Socket.IO event: ["tegrastats_update",{ ...the whole document... }]
static void onUpdate(uint8_t *payload, size_t length) {
  static const char EVENT[] = "[\"tegrastats_update\",";
  if (length < sizeof(EVENT) - 1 || memcmp(payload, EVENT, sizeof(EVENT) - 1) != 0) {
    return;  // another event
  }
  // An array filter applies its first element to every element: the event name (a string)
  // is dropped, and of the document only these paths are kept.
  JsonDocument filter;
  JsonObject keep = filter.add<JsonObject>();
  keep["source"] = true;
  keep["cpu"]["usage"] = true;
  keep["gpu"]["usage"] = true;
  keep["memory"]["ram"]["used"] = true;
  keep["memory"]["ram"]["total"] = true;
  keep["temperature"]["tj"] = true;

  JsonDocument doc;
  DeserializationError error = deserializeJson(doc, payload, length, DeserializationOption::Filter(filter));
  if (error) {
    Serial.printf("bad JSON: %s\n", error.c_str());
    return;
  }
  JsonVariantConst sample = doc[1];
  printValue("CPU", sample["cpu"]["usage"], " %");
  printValue("GPU", sample["gpu"]["usage"], " %");
  Serial.printf("RAM %d/%d MB  ", sample["memory"]["ram"]["used"] | 0, sample["memory"]["ram"]["total"] | 0);
  printValue("Tj", sample["temperature"]["tj"], " C");
  Serial.println(sample["source"] | "");
}

static void onSocketIOEvent(socketIOmessageType_t type, uint8_t *payload, size_t length) {
  switch (type) {
    case sIOtype_CONNECT:
      // Engine.IO is up: join the default namespace (Socket.IO v3+ does not join by itself).
      Serial.println("connected");
      socketIO.send(sIOtype_CONNECT, "/");
      break;
    case sIOtype_DISCONNECT:
      Serial.println("disconnected");  // the library reconnects by itself
      break;
    case sIOtype_EVENT:
      onUpdate(payload, length);
      break;
    case sIOtype_ERROR:
      // A refused connection: "missing or invalid token", or the server's connection cap.
      Serial.printf("refused: %.*s\n", (int)length, (const char *)payload);
      break;
    default:
      break;
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

  String url = "/socket.io/?EIO=4";  // EIO=4 asked for explicitly: the library default is 3
  if (AUTH_TOKEN[0] != '\0') {
    url += String("&token=") + AUTH_TOKEN;
  }
  socketIO.begin(JETSON_HOST, JETSON_PORT, url.c_str());
  socketIO.onEvent(onSocketIOEvent);
  socketIO.setReconnectInterval(3000);
}

void loop() {
  socketIO.loop();
}
