/* Board facts for the ST STM32F4 Discovery kit (STM32F407VG, Cortex-M4F) with
 * the STM32F4DIS-BB base board's Ethernet (LAN8720 PHY at address 0, RMII),
 * from RM0090 (STM32F405/407 reference manual) and the STM32F407 datasheet:
 * 1 MiB flash at 0x08000000, 128 KiB SRAM at 0x20000000 (SRAM1 + SRAM2),
 * 64 KiB CCM data RAM at 0x10000000 (CPU only: no DMA, no code). */
#ifndef BOARD_CONFIG_H
#define BOARD_CONFIG_H

/* HSE 8 MHz (the kit's crystal) -> PLL -> 72 MHz core; APB1 36 MHz, APB2 72 MHz. */
#define SYSCLK_HZ        72000000u
#define APB1_HZ          36000000u

/* What the node reports in /3 (Device) */
#define BOARD_MODEL          "stm32f4-discovery"
#define BOARD_SERIAL_NUMBER  "STM32F407-0001"
#define BOARD_MEMORY_KB      192       /* SRAM 128 KiB + CCM 64 KiB */
#define BOARD_SLIP_NAME      "SLIP on USART3"
#define BOARD_ETH_NAME       "STM32F4 Ethernet MAC"

#define RCC_BASE         0x40023800u
#define FLASH_R_BASE     0x40023C00u
#define SYSCFG_BASE      0x40013800u
#define GPIOA_BASE       0x40020000u
#define GPIOB_BASE       0x40020400u
#define GPIOC_BASE       0x40020800u
#define GPIOD_BASE       0x40020C00u
#define USART2_BASE      0x40004400u
#define USART3_BASE      0x40004800u
#define ETH_BASE         0x40028000u
#define RNG_BASE         0x50060800u

/* Interrupt numbers (RM0090, vector table) */
#define IRQ_USART2       38
#define IRQ_USART3       39
#define IRQ_ETH          61
#define IRQ_COUNT        82

/* The board's interrupt handlers, for the vector table: X(irq, handler). */
#define BOARD_IRQS(X) \
    X(IRQ_USART2, USART2_IRQHandler) \
    X(IRQ_USART3, USART3_IRQHandler) \
    X(IRQ_ETH, ETH_IRQHandler)

/* RCC registers the drivers share */
#define RCC_AHB1RSTR     REG32(RCC_BASE + 0x10u)
#define RCC_AHB1ENR      REG32(RCC_BASE + 0x30u)
#define RCC_AHB2ENR      REG32(RCC_BASE + 0x34u)
#define RCC_APB1ENR      REG32(RCC_BASE + 0x40u)
#define RCC_APB2ENR      REG32(RCC_BASE + 0x44u)

/* GPIO pin in alternate function af (push-pull, very high speed, no pull). */
void gpio_alternate(uint32_t gpio_base, int pin, int af);

#endif
