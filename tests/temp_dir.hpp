// A fresh directory under the system temp dir, removed with everything in it on destruction.
// For unit tests; the integration harness has its own (tests/support/processes.hpp), which can
// keep its logs for a failed run.
#pragma once

#include <stdlib.h>  // mkdtemp

#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace navietakie::test {

class UnitTempDir {
 public:
  explicit UnitTempDir(const std::string& prefix = "navietakie-unit") {
    std::string pattern = (std::filesystem::temp_directory_path() / (prefix + "-XXXXXX")).string();
    if (mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~UnitTempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  UnitTempDir(const UnitTempDir&) = delete;
  UnitTempDir& operator=(const UnitTempDir&) = delete;

  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace navietakie::test
