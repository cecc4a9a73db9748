// arm64 (docs/arm64.md): the cross-built plugin inside Debian's arm64 mosquitto, both run under
// qemu-aarch64-static and driven by the amd64 test client; and an LMDB store moved between the
// amd64 and the arm64 build in both directions, every record read back equal.
// Registered (label `cross`) only when the tree is configured with NAVIETAKIE_CROSS_BUILD_DIR and
// NAVIETAKIE_ARM64_BROKER_ROOT: scripts/test -L cross does that after building build-cross.
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "support/contract.hpp"

#if !defined(NAVIETAKIE_CROSS_PLUGIN_SO) || !defined(NAVIETAKIE_CROSS_STORE_SAMPLE) || \
    !defined(NAVIETAKIE_STORE_SAMPLE) || !defined(NAVIETAKIE_ARM64_BROKER_ROOT)
#error "test_cross needs the paths tests/CMakeLists.txt defines from NAVIETAKIE_CROSS_BUILD_DIR"
#endif

using namespace navietakie;
using namespace navietakie::test;

namespace {

const std::string arm64_root = NAVIETAKIE_ARM64_BROKER_ROOT;

// Runs an arm64 program under user-mode qemu. The loader and the installed :arm64 libraries are
// the multiarch ones under "/" (-L /: the cross toolchain's own /usr/aarch64-linux-gnu glibc hangs
// at the first thread); the unpacked broker's libraries that are not installed come from its root.
std::vector<std::string> under_qemu() {
  return {"qemu-aarch64-static", "-L", "/", "-E",
          "LD_LIBRARY_PATH=" + arm64_root + "/usr/lib/aarch64-linux-gnu:" + arm64_root + "/lib/aarch64-linux-gnu"};
}

// e_machine of an ELF file (183: EM_AARCH64, 62: EM_X86_64); 0 when it cannot be read.
std::uint16_t elf_machine(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  unsigned char header[20] = {};
  if (!file.read(reinterpret_cast<char*>(header), sizeof header)) return 0;
  if (header[0] != 0x7f || header[1] != 'E' || header[2] != 'L' || header[3] != 'F') return 0;
  return static_cast<std::uint16_t>(header[18] | (header[19] << 8));  // both hosts little endian
}
constexpr std::uint16_t kAarch64 = 183;

// Runs one store-sample command (argv) to completion; its exit code and output.
struct Finished {
  int exit_code = -1;
  std::string output;
};
Finished run_to_end(std::vector<std::string> argv, const TempDir& dir, const std::string& log_name) {
  Process process(std::move(argv), ProcessOptions{dir.file(log_name)});
  const auto code = process.wait_exit(120s);
  if (!code) process.stop();
  return Finished{code.value_or(-1), read_file(dir.file(log_name))};
}

std::vector<std::string> native_sample(const std::string& mode, const std::string& store_dir) {
  return {NAVIETAKIE_STORE_SAMPLE, mode, store_dir};
}
std::vector<std::string> arm64_sample(const std::string& mode, const std::string& store_dir) {
  std::vector<std::string> argv = under_qemu();
  argv.insert(argv.end(), {NAVIETAKIE_CROSS_STORE_SAMPLE, mode, store_dir});
  return argv;
}

// Writes the sample with one build, verifies it with the other (and with the writer, so that a
// failure says which side differs).
void check_store_moves(const std::vector<std::string>& write, const std::vector<std::string>& verify_other,
                       const std::vector<std::string>& verify_same, const TempDir& dir) {
  const Finished written = run_to_end(write, dir, "write.log");
  BOOST_REQUIRE_MESSAGE(written.exit_code == 0, "writing the sample failed:\n" << written.output);
  const Finished same = run_to_end(verify_same, dir, "verify-same.log");
  BOOST_REQUIRE_MESSAGE(same.exit_code == 0, "the writer cannot read its own store:\n" << same.output);
  const Finished other = run_to_end(verify_other, dir, "verify-other.log");
  BOOST_TEST(other.exit_code == 0, "the other architecture reads different records:\n" << other.output);
  BOOST_TEST(other.output.find("verified ") != std::string::npos, other.output);
  BOOST_TEST(other.output.find(" 0 different") != std::string::npos, other.output);
}

}  // namespace

BOOST_AUTO_TEST_SUITE(cross_arm64)

BOOST_AUTO_TEST_CASE(the_artifacts_under_test_are_arm64) {
  BOOST_TEST(elf_machine(NAVIETAKIE_CROSS_PLUGIN_SO) == kAarch64);
  BOOST_TEST(elf_machine(NAVIETAKIE_CROSS_STORE_SAMPLE) == kAarch64);
  BOOST_TEST(elf_machine(arm64_root + "/usr/sbin/mosquitto") == kAarch64);
}

BOOST_AUTO_TEST_CASE(arm64_broker_with_arm64_plugin_answers_send_get_and_call) {
  SystemOptions options = system_options(Host::plugin);
  options.plugin_path = NAVIETAKIE_CROSS_PLUGIN_SO;
  options.secure = true;  // the arm64 OpenSSL and libjwt verify the amd64-signed tokens
  options.broker_launch.wrapper = under_qemu();
  options.broker_launch.executable = arm64_root + "/usr/sbin/mosquitto";
  // Emulated, the broker and the plugin start and answer several times slower.
  options.broker_launch.start_timeout = 30s;
  options.broker_launch.stop_timeout = 15s;
  options.ready_timeout = 60s;
  System system(options);
  TestContext ctx(system);
  auto client = ctx.client();
  const std::string code = booking("arm");

  const json sent = client->request(request_topic(code, "send_message"), text_message("driver", "xin chào từ arm64"), 20s);
  NT_REQUIRE_OK(sent);
  BOOST_TEST(sent["message"].value("seq", -1) == 1);

  const json page = client->request(request_topic(code, "get_message"), json::object(), 20s);
  NT_REQUIRE_OK(page);
  BOOST_TEST(page_seqs(page) == std::vector<std::int64_t>{1}, boost::test_tools::per_element());
  BOOST_TEST(page["messages"][0].value("text", "") == "xin chào từ arm64");

  const json call = client->request(request_topic(code, "make_call"), call_request("start", "passenger"), 20s);
  NT_REQUIRE_OK(call);
  BOOST_TEST(call["call"].value("state", "") == "ringing");
}

BOOST_AUTO_TEST_CASE(store_written_on_amd64_reads_back_on_arm64) {
  TempDir dir("navietakie-cross-store");
  const std::string store = dir.file("data");
  std::filesystem::create_directories(store);
  check_store_moves(native_sample("write", store), arm64_sample("verify", store), native_sample("verify", store), dir);
}

BOOST_AUTO_TEST_CASE(store_written_on_arm64_reads_back_on_amd64) {
  TempDir dir("navietakie-cross-store");
  const std::string store = dir.file("data");
  std::filesystem::create_directories(store);
  check_store_moves(arm64_sample("write", store), native_sample("verify", store), arm64_sample("verify", store), dir);
}

BOOST_AUTO_TEST_SUITE_END()
