// ocicache-go: passes every `go` invocation to the real go; see pkg/ko/wrapper.h.
// Signal dispositions are left alone: go inherits them through exec.
#include "pkg/ko/wrapper.h"

int main(int argc, char** argv) { return ocicache::ko::WrapperMain(argc, argv); }
