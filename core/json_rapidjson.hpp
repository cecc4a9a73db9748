// RapidJSON as the core includes it: every core file includes it through here, so that its
// configuration is one for all of them.
#pragma once

// The writer scans strings for characters to escape 16 bytes at a time (x86-64 always has SSE2;
// another target, such as the arm64 cross build, takes the byte-by-byte path).
#if defined(__SSE2__) && !defined(RAPIDJSON_SSE2)
#define RAPIDJSON_SSE2
#endif

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>
