/* STM32F4 Discovery: clocks (HSE 8 MHz -> PLL -> 72 MHz), GPIO alternate
 * functions, the RNG for entropy. Register facts: RM0090, RCC, FLASH, GPIO
 * and RNG chapters. */
#include "board.h"

#define RCC_CR           REG32(RCC_BASE + 0x00u)
#define RCC_PLLCFGR      REG32(RCC_BASE + 0x04u)
#define RCC_CFGR         REG32(RCC_BASE + 0x08u)
#define FLASH_ACR        REG32(FLASH_R_BASE + 0x00u)

#define CR_HSEON         (1u << 16)
#define CR_HSERDY        (1u << 17)
#define CR_PLLON         (1u << 24)
#define CR_PLLRDY        (1u << 25)
/* PLL from HSE: 8 MHz / M 8 = 1 MHz, x N 288 = 288 MHz VCO, / P 4 = 72 MHz, / Q 6 = 48 MHz (USB). */
#define PLLCFGR_72MHZ    (8u | (288u << 6) | (1u << 16) | (1u << 22) | (6u << 24))
#define PLLCFGR_RESERVED 0xF0BC8000u   /* kept at their reset values */
#define CFGR_SW_PLL      2u
#define CFGR_SWS_MASK    (3u << 2)
#define CFGR_SWS_PLL     (2u << 2)
#define CFGR_PPRE1_DIV2  (4u << 10)
/* 72 MHz at 3.3 V: two wait states; prefetch, instruction and data caches on. */
#define ACR_72MHZ        (2u | (1u << 8) | (1u << 9) | (1u << 10))

#define AHB1ENR_GPIOA_D  0xFu
#define AHB2ENR_RNGEN    (1u << 6)

#define GPIO_MODER(g)    REG32((g) + 0x00u)
#define GPIO_OTYPER(g)   REG32((g) + 0x04u)
#define GPIO_OSPEEDR(g)  REG32((g) + 0x08u)
#define GPIO_PUPDR(g)    REG32((g) + 0x0Cu)
#define GPIO_AFR(g, n)   REG32((g) + 0x20u + 4u * (n))

#define RNG_CR           REG32(RNG_BASE + 0x00u)
#define RNG_SR           REG32(RNG_BASE + 0x04u)
#define RNG_DR           REG32(RNG_BASE + 0x08u)
#define RNG_CR_RNGEN     (1u << 2)
#define RNG_SR_DRDY      (1u << 0)

/* Bounds on waits for the hardware: a model that never sets a flag must not hang the boot. */
#define CLOCK_SPINS      100000u
#define RNG_SPINS        10000u

static int wait_set(volatile uint32_t *reg, uint32_t mask, uint32_t value)
{
    for (uint32_t i = 0; i < CLOCK_SPINS; i++)
        if ((*reg & mask) == value)
            return 0;
    return -1;
}

void board_init(void)
{
    RCC_CR |= CR_HSEON;
    if (wait_set(&RCC_CR, CR_HSERDY, CR_HSERDY) == 0) {
        RCC_PLLCFGR = (RCC_PLLCFGR & PLLCFGR_RESERVED) | PLLCFGR_72MHZ;
        RCC_CR |= CR_PLLON;
        if (wait_set(&RCC_CR, CR_PLLRDY, CR_PLLRDY) == 0) {
            FLASH_ACR = ACR_72MHZ;
            RCC_CFGR = CFGR_PPRE1_DIV2 | CFGR_SW_PLL;
            (void)wait_set(&RCC_CFGR, CFGR_SWS_MASK, CFGR_SWS_PLL);
        }
    }
    /* Without the crystal the core stays on HSI (16 MHz) and every rate is off; nothing better to do. */
    RCC_AHB1ENR |= AHB1ENR_GPIOA_D;
    RCC_AHB2ENR |= AHB2ENR_RNGEN;
    RNG_CR = RNG_CR_RNGEN;
}

void gpio_alternate(uint32_t g, int pin, int af)
{
    GPIO_MODER(g) = (GPIO_MODER(g) & ~(3u << (2 * pin))) | (2u << (2 * pin));
    GPIO_OTYPER(g) &= ~(1u << pin);
    GPIO_OSPEEDR(g) |= 3u << (2 * pin);
    GPIO_PUPDR(g) &= ~(3u << (2 * pin));
    GPIO_AFR(g, pin / 8) = (GPIO_AFR(g, pin / 8) & ~(0xFu << (4 * (pin % 8)))) | ((uint32_t)af << (4 * (pin % 8)));
}

/* Renode delivers every SysTick interrupt, skipping idle time or not. */
uint32_t board_systick_periods(void)
{
    return 1;
}

/* No free-running counter is read here: SysTick keeps its 1 ms period. */
int board_counts_time(void)
{
    return 0;
}

uint32_t board_entropy(void)
{
    uint32_t e = SYST_CVR << 8;
    for (uint32_t i = 0; i < RNG_SPINS; i++) {
        if (RNG_SR & RNG_SR_DRDY)
            return e ^ RNG_DR;
    }
    return e;
}
