package ocicache.e2e.app;

import static org.junit.Assert.assertTrue;

import org.junit.Test;

public class MainTest {
  @Test
  public void lineStartsWithGreeting() {
    assertTrue(Main.line("gradle").startsWith("hello, gradle "));
  }
}
