// A plain test (no framework, so the sample stays quick to compile).
#include <iostream>

#include "greet.h"

int main() {
  if (Greet("bazel") != "hello, bazel") {
    std::cerr << "Greet(\"bazel\") = " << Greet("bazel") << "\n";
    return 1;
  }
  return 0;
}
