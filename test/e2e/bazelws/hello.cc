#include <iostream>

#include "greet.h"

int main(int argc, char** argv) {
  std::cout << Greet(argc > 1 ? argv[1] : "world") << "\n";
  return 0;
}
